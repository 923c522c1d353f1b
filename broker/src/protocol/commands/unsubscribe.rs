//! UNSUBSCRIBE: delete the subscription. Refused while other consumers are attached (unless
//! forced), and then the asking consumer stays attached and keeps receiving.

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::cmd;
use crate::protocol::pb::{CommandUnsubscribe, ServerError};

/// Handles UNSUBSCRIBE.
pub async fn handle(conn: &mut Connection, c: CommandUnsubscribe) -> Result<()> {
    let Some(cs) = conn.consumers.get(&c.consumer_id) else {
        return conn
            .send(cmd::error(
                c.request_id,
                ServerError::ConsumerNotFound,
                "no such consumer".into(),
            ))
            .await;
    };
    let (topic, sub) = (cs.topic.clone(), cs.subscription.clone());
    let key = (conn.id, c.consumer_id);
    if sub.has_consumers_other_than(key) && !c.force.unwrap_or(false) {
        return conn
            .send(cmd::error(
                c.request_id,
                ServerError::ConsumerBusy,
                "other consumers are attached".into(),
            ))
            .await;
    }
    sub.remove_consumer(key);
    conn.consumers.remove(&c.consumer_id);
    match topic.unsubscribe(&sub.name).await {
        Ok(()) => conn.send(cmd::success(c.request_id)).await,
        Err(e) => {
            conn.send(cmd::error(c.request_id, e.server_error(), e.to_string()))
                .await
        }
    }
}
