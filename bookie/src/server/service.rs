//! The tonic service: routes each RPC to its handler.

use std::sync::Arc;

use proto::bookie::bookie_server::Bookie;
use proto::bookie::{
    AddBatch, AddBatchResponse, BookieInfoRequest, BookieInfoResponse, DeleteLedgerRequest,
    DeleteLedgerResponse, FenceRequest, FenceResponse, LedgerInfoRequest, LedgerInfoResponse,
    ListLedgersRequest, ListLedgersResponse, ReadLacRequest, ReadLacResponse, ReadRequest,
    ReadResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Shared;
use super::handlers;

/// The bookie's gRPC service.
#[derive(Debug, Clone)]
pub struct BookieService {
    pub(super) shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Bookie for BookieService {
    type AddEntriesStream = ReceiverStream<Result<AddBatchResponse, Status>>;

    async fn add_entries(
        &self,
        request: Request<Streaming<AddBatch>>,
    ) -> Result<Response<Self::AddEntriesStream>, Status> {
        Ok(Response::new(handlers::add_entries::handle(
            self.shared.engine.clone(),
            request.into_inner(),
        )))
    }

    async fn read_entry(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<ReadResponse>, Status> {
        Ok(Response::new(
            handlers::read_entry::handle(&self.shared.engine, request.into_inner()).await,
        ))
    }

    async fn read_lac(
        &self,
        request: Request<ReadLacRequest>,
    ) -> Result<Response<ReadLacResponse>, Status> {
        Ok(Response::new(
            handlers::read_lac::handle(&self.shared.engine, request.into_inner()).await,
        ))
    }

    async fn fence(
        &self,
        request: Request<FenceRequest>,
    ) -> Result<Response<FenceResponse>, Status> {
        Ok(Response::new(
            handlers::fence::handle(&self.shared.engine, request.into_inner()).await,
        ))
    }

    async fn ledger_info(
        &self,
        request: Request<LedgerInfoRequest>,
    ) -> Result<Response<LedgerInfoResponse>, Status> {
        Ok(Response::new(
            handlers::ledger_info::handle(&self.shared.engine, request.into_inner()).await,
        ))
    }

    async fn list_ledgers(
        &self,
        _request: Request<ListLedgersRequest>,
    ) -> Result<Response<ListLedgersResponse>, Status> {
        Ok(Response::new(handlers::list_ledgers::handle(
            &self.shared.engine,
        )))
    }

    async fn delete_ledger(
        &self,
        request: Request<DeleteLedgerRequest>,
    ) -> Result<Response<DeleteLedgerResponse>, Status> {
        Ok(Response::new(
            handlers::delete_ledger::handle(&self.shared.engine, request.into_inner()).await,
        ))
    }

    async fn bookie_info(
        &self,
        _request: Request<BookieInfoRequest>,
    ) -> Result<Response<BookieInfoResponse>, Status> {
        Ok(Response::new(handlers::bookie_info::handle(&self.shared)))
    }
}
