//! Non-persistent topics (`non-persistent://tenant/ns/topic`), as Pulsar's: nothing is
//! stored. A message goes at once to one consumer of each subscription that has permits —
//! the first (active) one for Exclusive and Failover, round-robin for Shared, its key's
//! owner for Key_Shared — and is dropped for a subscription with none (counted in
//! `pulsar_msg_drop_total`). The producer's receipt carries the id `-1:-1`, as Pulsar's does;
//! delivered messages carry `0:<n>` (n counts the topic's messages), and acknowledgements
//! change nothing. A topic lives in memory while a producer or a subscription uses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use common::{EntryId, LedgerId, Position};

use crate::error::{BrokerError, Result};
use crate::protocol::cmd;
use crate::protocol::frame::{encode_with_payload, inspect_payload};
use crate::protocol::pb::command_subscribe::SubType;
use crate::topic::subscription::ConsumerHandle;

/// The prefix of a non-persistent topic's name.
pub const PREFIX: &str = "non-persistent://";

/// Whether `name` names a non-persistent topic.
pub fn is_non_persistent(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// One subscription: its consumers (no cursor).
#[derive(Debug)]
pub struct NpSubscription {
    /// Its name.
    pub name: String,
    state: Mutex<SubState>,
}

#[derive(Debug)]
struct SubState {
    sub_type: SubType,
    consumers: Vec<Arc<ConsumerHandle>>,
    next: usize,
    /// Key_Shared: which consumer owns which key hash (as on persistent topics).
    selector: Option<crate::topic::key_shared::Selector>,
}

impl NpSubscription {
    fn state(&self) -> std::sync::MutexGuard<'_, SubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a consumer under the subscription type's rules (as persistent subscriptions).
    pub fn add_consumer(&self, c: Arc<ConsumerHandle>, sub_type: SubType) -> Result<()> {
        let mut st = self.state();
        if st.consumers.is_empty() {
            st.sub_type = sub_type;
        }
        if st.sub_type != sub_type {
            return Err(BrokerError::ConsumerBusy(format!(
                "subscription {} is {:?}, not {:?}",
                self.name, st.sub_type, sub_type
            )));
        }
        if sub_type == SubType::Exclusive && !st.consumers.is_empty() {
            return Err(BrokerError::ConsumerBusy(format!(
                "exclusive subscription {} already has a consumer",
                self.name
            )));
        }
        if sub_type == SubType::KeyShared {
            let first = st.consumers.is_empty();
            let meta = c.key_shared.as_ref();
            crate::topic::key_shared::join(
                &mut st.selector,
                first,
                &self.name,
                c.key,
                &c.name,
                meta,
            )?;
        }
        st.consumers.push(c);
        if st.sub_type == SubType::Failover {
            st.consumers
                .sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        }
        Ok(())
    }

    /// Removes a consumer; returns whether none is left.
    pub fn remove_consumer(&self, key: (u64, u64)) -> bool {
        let mut st = self.state();
        st.consumers.retain(|c| c.key != key);
        if let Some(selector) = st.selector.as_mut() {
            selector.remove(key);
        }
        st.consumers.is_empty()
    }

    /// The consumer that takes a message of `n` messages now, if one has permits.
    fn pick(&self, key_hash: u32) -> Option<Arc<ConsumerHandle>> {
        let mut st = self.state();
        let len = st.consumers.len();
        let has_permits = |c: &ConsumerHandle| c.permits.load(Ordering::SeqCst) > 0;
        match st.sub_type {
            SubType::Exclusive | SubType::Failover => {
                st.consumers.first().filter(|c| has_permits(c)).cloned()
            }
            SubType::KeyShared => {
                let owner = st.selector.as_ref()?.select(key_hash)?;
                let c = st.consumers.iter().find(|c| c.key == owner)?;
                has_permits(c).then(|| c.clone())
            }
            SubType::Shared => {
                let i = (0..len)
                    .map(|i| (st.next + i) % len)
                    .find(|i| has_permits(&st.consumers[*i]))?;
                st.next = (i + 1) % len.max(1);
                Some(st.consumers[i].clone())
            }
        }
    }
}

/// One non-persistent topic.
#[derive(Debug)]
pub struct NpTopic {
    /// Full name.
    pub name: String,
    subscriptions: Mutex<HashMap<String, Arc<NpSubscription>>>,
    producers: Mutex<HashMap<(u64, u64), String>>,
    /// Messages (entries) published, for their ids and stats.
    published: AtomicU64,
    /// Entries dropped for want of a consumer with permits.
    pub dropped: AtomicU64,
}

impl NpTopic {
    fn new(name: String) -> Arc<Self> {
        Arc::new(NpTopic {
            name,
            subscriptions: Mutex::default(),
            producers: Mutex::default(),
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// Attaches a producer (names are unique per topic, as on persistent topics).
    pub fn add_producer(&self, key: (u64, u64), name: String) -> Result<()> {
        let mut producers = self.producers.lock().unwrap_or_else(|p| p.into_inner());
        if producers.iter().any(|(k, n)| *n == name && *k != key) {
            return Err(BrokerError::ProducerBusy(format!(
                "producer with name '{name}' is already connected to topic {}",
                self.name
            )));
        }
        producers.insert(key, name);
        Ok(())
    }

    /// Detaches a producer.
    pub fn remove_producer(&self, key: (u64, u64)) {
        self.producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// The subscription `name`, created if new.
    pub fn subscription(&self, name: &str, sub_type: SubType) -> Arc<NpSubscription> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(NpSubscription {
                    name: name.to_owned(),
                    state: Mutex::new(SubState {
                        sub_type,
                        consumers: Vec::new(),
                        next: 0,
                        selector: None,
                    }),
                })
            })
            .clone()
    }

    /// Drops a subscription once it has no consumer.
    pub fn release(&self, name: &str) {
        let mut subs = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        if subs
            .get(name)
            .is_some_and(|s| s.state().consumers.is_empty())
        {
            subs.remove(name);
        }
    }

    fn is_idle(&self) -> bool {
        self.producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
            && self
                .subscriptions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    /// Delivers one entry (a producer's payload section, checked) to a consumer of each
    /// subscription with permits; drops it for the others.
    pub fn publish(&self, payload: &Bytes) -> Result<()> {
        let info = inspect_payload(payload)
            .map_err(|e| BrokerError::Protocol(format!("malformed payload: {e}")))?;
        let messages = i64::from(info.messages(payload.len()));
        let hash = crate::sticky_key::key_hash(&info.metadata);
        let n = self.published.fetch_add(1, Ordering::Relaxed);
        let position = Position::new(LedgerId(0), EntryId(n));
        let partition = cmd::partition_of(&self.name);
        let subs: Vec<Arc<NpSubscription>> = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for s in subs {
            match s.pick(hash) {
                Some(c) => {
                    c.permits.fetch_sub(messages, Ordering::SeqCst);
                    let mut buf = BytesMut::new();
                    encode_with_payload(
                        &cmd::message(c.consumer_id, position, partition, 0),
                        payload,
                        &mut buf,
                    );
                    if c.out.try_send(buf.freeze()).is_err() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("pulsar_msg_drop_total").increment(1);
                    }
                }
                None => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("pulsar_msg_drop_total").increment(1);
                }
            }
        }
        Ok(())
    }
}

/// The broker's non-persistent topics.
#[derive(Debug, Default)]
pub struct NpTopics {
    topics: Mutex<HashMap<String, Arc<NpTopic>>>,
}

impl NpTopics {
    /// The topic `name`, created if new.
    pub fn get_or_create(&self, name: &str) -> Arc<NpTopic> {
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| NpTopic::new(name.to_owned()))
            .clone()
    }

    /// Forgets `topic` if nothing uses it any more.
    pub fn release_if_idle(&self, topic: &NpTopic) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if topic.is_idle() {
            topics.remove(&topic.name);
        }
    }

    /// The names of the live topics of namespace `ns`, sorted.
    pub fn names_in(&self, ns: &str) -> Vec<String> {
        let prefix = format!("{PREFIX}{ns}/");
        let mut names: Vec<String> = self
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|n| n.starts_with(&prefix) && !n[prefix.len()..].contains('/'))
            .cloned()
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(id: u64, permits: i64) -> (Arc<ConsumerHandle>, crate::outbound::OutboundRx) {
        let (out, rx) = crate::outbound::channel(16);
        let c = Arc::new(ConsumerHandle {
            key: (1, id),
            consumer_id: id,
            name: format!("c{id}"),
            out,
            permits: std::sync::atomic::AtomicI64::new(permits),
            priority: 0,
            protocol_version: 19,
            reached_end: Default::default(),
            epoch: std::sync::atomic::AtomicI64::new(-1),
            key_shared: None,
            broker_entry_metadata: false,
        });
        (c, rx)
    }

    fn payload() -> Bytes {
        crate::protocol::frame::build_payload(
            &crate::protocol::pb::MessageMetadata {
                producer_name: "p".into(),
                sequence_id: 0,
                publish_time: 1,
                ..Default::default()
            },
            b"x",
        )
    }

    #[test]
    fn shared_round_robin_and_drop_without_permits() {
        let t = NpTopic::new("non-persistent://a/b/t".into());
        let s = t.subscription("s", SubType::Shared);
        let (c1, mut r1) = consumer(1, 1);
        let (c2, mut r2) = consumer(2, 1);
        s.add_consumer(c1, SubType::Shared).unwrap();
        s.add_consumer(c2, SubType::Shared).unwrap();
        for _ in 0..3 {
            t.publish(&payload()).unwrap();
        }
        assert!(r1.try_recv().is_some() && r2.try_recv().is_some());
        assert!(
            r1.try_recv().is_none() && r2.try_recv().is_none(),
            "no permits left"
        );
        assert_eq!(t.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn key_shared_routes_by_the_subscriptions_sticky_ranges() {
        use crate::topic::key_shared::sticky_meta;
        let t = NpTopic::new("non-persistent://a/b/ks".into());
        let s = t.subscription("s", SubType::KeyShared);
        let with = |id, ranges: &[(i32, i32)]| {
            let (c, rx) = consumer(id, 10);
            let mut c = Arc::into_inner(c).unwrap();
            c.key_shared = Some(sticky_meta(ranges, None));
            (Arc::new(c), rx)
        };
        let (c1, _r1) = with(1, &[(0, 32_767)]);
        let (c2, _r2) = with(2, &[(32_768, 65_535)]);
        let (c3, _r3) = with(3, &[(100, 200)]);
        s.add_consumer(c1, SubType::KeyShared).unwrap();
        s.add_consumer(c2, SubType::KeyShared).unwrap();
        assert!(matches!(
            s.add_consumer(c3, SubType::KeyShared),
            Err(BrokerError::ConsumerAssign(_))
        ));
        assert_eq!(s.pick(5).map(|c| c.key), Some((1, 1)));
        assert_eq!(s.pick(40_000).map(|c| c.key), Some((1, 2)));
        s.remove_consumer((1, 2));
        assert!(s.pick(40_000).is_none(), "no consumer owns it any more");
    }

    #[test]
    fn topics_live_while_used() {
        let all = NpTopics::default();
        let t = all.get_or_create("non-persistent://a/b/t");
        t.add_producer((1, 1), "p".into()).unwrap();
        assert!(
            t.add_producer((1, 2), "p".into()).is_err(),
            "names are unique"
        );
        assert_eq!(all.names_in("a/b"), ["non-persistent://a/b/t"]);
        t.remove_producer((1, 1));
        all.release_if_idle(&t);
        assert!(all.names_in("a/b").is_empty());
        let (c, _rx) = consumer(3, 1);
        let ex = t.subscription("e", SubType::Exclusive);
        ex.add_consumer(c.clone(), SubType::Exclusive).unwrap();
        assert!(ex.add_consumer(c, SubType::Exclusive).is_err());
    }
}
