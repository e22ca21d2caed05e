//! A worker session's turn: the outcome batches its worker sent since the last turn and a
//! claim for its credit, recorded and granted together.
//!
//! Outcomes and the next claim of a session arrive together (a slot that frees sends both), and
//! as two transactions side by side they raced each other for the same CPU and paid two commits
//! (docs/postgres-hot-path.md §14–15). For a tenant without limits they are one transaction
//! ([`Store::finish_and_claim`](crate::store::Store::finish_and_claim)): the outcomes first, so
//! the claim sees what they freed or sent back to the queue. A tenant with limits records its
//! outcomes first and then claims, each in its own transaction, because the outcomes must feed
//! its breakers and adaptive rates before a claim is gated by them.

use leasehold_proto::{OutcomeReport, OutcomeResult};

use super::{Granted, Leasing};
use crate::error::{ApiError, ApiResult};
use crate::store::ClaimParams;

/// What one turn answers.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    /// Each outcome batch's answer, with its `seq`.
    pub(crate) answers: Vec<(u64, ApiResult<Vec<OutcomeResult>>)>,
    /// What the claim granted; `None` when the turn claimed nothing (no credit). A failure is
    /// logged here.
    pub(crate) granted: Option<ApiResult<Granted>>,
}

impl Leasing {
    /// One turn of a single tenant's worker session: records `batches` (each `(seq, reports)`;
    /// a bad outcome rejects its own batch, as [`Leasing::finish_many`] does) and, with
    /// `claim`, claims for the session's credit.
    pub(crate) async fn turn(
        &self,
        tenant: &str,
        batches: Vec<(u64, Vec<OutcomeReport>)>,
        claim: Option<&ClaimParams>,
    ) -> Turn {
        let now = self.clock.now();
        let mut turn = Turn::default();
        let mut sizes = Vec::with_capacity(batches.len());
        let mut outcomes = Vec::new();
        for (seq, reports) in batches {
            let tenants = vec![tenant.to_owned(); reports.len()];
            match self.prepare(now, &tenants, reports).await {
                Ok(prepared) => {
                    sizes.push((seq, prepared.len()));
                    outcomes.extend(prepared);
                }
                Err(err) => turn.answers.push((seq, Err(err))),
            }
        }
        let claim = match claim {
            Some(params) if !outcomes.is_empty() && self.claims_ungated(params).await => params,
            claim => {
                if !outcomes.is_empty() {
                    let recorded = self.record(now, tenant, outcomes).await;
                    answer(&mut turn.answers, sizes, recorded);
                }
                if let Some(params) = claim {
                    turn.granted = Some(self.claim_now(params).await.map_err(|err| {
                        tracing::warn!(%err, "claim for a worker session failed");
                        ApiError::from(err)
                    }));
                }
                return turn;
            }
        };
        let params = ClaimParams {
            ungated: true,
            ..claim.clone()
        };
        let asked = self.asked(tenant, &outcomes).await;
        match self
            .store
            .finish_and_claim(now, tenant, outcomes, &params)
            .await
        {
            Ok((finished, claimed)) => {
                let recorded = self.settle(now, tenant, asked, finished).await;
                answer(&mut turn.answers, sizes, recorded);
                turn.granted = Some(Ok(self.granted(&params, claimed, now)));
            }
            Err(err) => {
                tracing::warn!(%err, "a worker session's outcomes and claim failed");
                let err = ApiError::from(err);
                answer(&mut turn.answers, sizes, Err(err.clone()));
                turn.granted = Some(Err(err));
            }
        }
        turn
    }

    /// Whether a claim may share a transaction with outcomes: one tenant's (not a pool's),
    /// known to have no limits. A tenant whose limits cannot be read is taken to have some.
    async fn claims_ungated(&self, params: &ClaimParams) -> bool {
        params.pool.is_none()
            && matches!(self.catalog.facts(&*self.store, &params.tenant).await,
                        Ok(facts) if !facts.gated)
    }
}

/// Splits the answers of the outcomes of several batches (`sizes`: each batch's `seq` and
/// number of outcomes, in order) back into one answer per batch.
fn answer(
    answers: &mut Vec<(u64, ApiResult<Vec<OutcomeResult>>)>,
    sizes: Vec<(u64, usize)>,
    recorded: ApiResult<Vec<OutcomeResult>>,
) {
    match recorded {
        Ok(results) => {
            let mut results = results.into_iter();
            for (seq, n) in sizes {
                answers.push((seq, Ok(results.by_ref().take(n).collect())));
            }
        }
        Err(err) => answers.extend(sizes.into_iter().map(|(seq, _)| (seq, Err(err.clone())))),
    }
}
