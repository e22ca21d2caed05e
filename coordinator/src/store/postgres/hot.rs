//! The hot transactions on PostgreSQL — claims, outcome batches and a worker session's turns:
//! planned by index, on a kept connection (`super::kept`), run again after a deadlock or a
//! serialization failure (`StoreError::Retryable`), their after-commit work done once.

use sqlx::PgConnection;

use super::{PostgresStore, begin_by_index_on};
use crate::store::dag::DagEffects;
use crate::store::{StoreError, StoreResult};

/// The statements of one hot transaction, run by [`PostgresStore::hot_transaction`]: perhaps
/// more than once, since a deadlock or serialization failure runs them again from the start.
pub(super) trait HotWork: Sync {
    type Out: Send;

    /// Runs the statements in `tx`, noting in `fx` what is left to do once it commits.
    fn run<'a>(
        &'a self,
        store: &'a PostgresStore,
        tx: &'a mut PgConnection,
        fx: &'a mut DagEffects,
    ) -> impl Future<Output = StoreResult<Self::Out>> + Send + 'a;
}

impl PostgresStore {
    /// Runs `work` in one transaction planned by index on a kept connection, again (up to three
    /// more times) after a deadlock or serialization failure. Only the attempt that committed
    /// runs its after-commit work (ended runs counted, claimers woken).
    pub(super) async fn hot_transaction<W: HotWork>(&self, work: &W) -> StoreResult<W::Out> {
        let mut tries = 0;
        loop {
            let attempt = async |conn: &mut PgConnection| {
                let mut tx = begin_by_index_on(conn).await?;
                let mut fx = DagEffects::default();
                let out = work.run(self, &mut tx, &mut fx).await?;
                tx.commit().await?;
                Ok((out, fx))
            };
            match self.kept.with(self.pool(), attempt).await {
                Err(StoreError::Retryable(_)) if tries < 3 => tries += 1,
                Err(err) => return Err(err),
                Ok((out, fx)) => {
                    fx.after_commit(&self.ready);
                    return Ok(out);
                }
            }
        }
    }
}
