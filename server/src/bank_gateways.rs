//! Where bank runs' credit transfer files go: a directory the institution's file channel
//! (EBICS, SFTP) picks them up from, or the simulated bank for development, tests and the demo.
//!
//! The simulated bank is in [`simulated`]; its statements reach Holdfast as a bank's would:
//! imported like an uploaded file ([`deliver_statements`]).

use crate::state::AppState;
use holdfast_core::CoreResult;
use holdfast_core::banking::runs::{self, BankFile, BankGateway, BankGatewayError};
use holdfast_core::banking::statements::{self, ImportSummary};
use holdfast_core::ids::PartyId;
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QueryFilter, QuerySelect};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

mod simulated;

pub use simulated::{SimulatedBank, Taken};

/// The gateway chosen at start (`--bank-gateway`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BankGatewayKind {
    /// The simulated bank (development, tests, the demo).
    Simulator,
    /// pain.001 files written into a directory for the institution's file channel.
    Files(PathBuf),
    /// No bank: payouts wait in `pending`, no run is prepared.
    Off,
}

impl FromStr for BankGatewayKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "simulator" => Ok(BankGatewayKind::Simulator),
            "off" => Ok(BankGatewayKind::Off),
            _ => match text.strip_prefix("files:") {
                Some(dir) if !dir.is_empty() => Ok(BankGatewayKind::Files(PathBuf::from(dir))),
                _ => Err("one of simulator, off, files:<directory>".to_owned()),
            },
        }
    }
}

impl AppState {
    /// The same state handing bank runs' files to `kind`.
    pub fn with_bank_gateway(mut self, kind: &BankGatewayKind) -> AppState {
        match kind {
            BankGatewayKind::Simulator => {
                let bank = Arc::new(SimulatedBank::new(self.db.clone(), self.core.clock.clone()));
                self.bank_gateway = Some(bank.clone());
                self.simulated_bank = Some(bank);
            }
            BankGatewayKind::Files(dir) => {
                self.bank_gateway = Some(Arc::new(FileDropGateway { dir: dir.clone() }));
                self.simulated_bank = None;
            }
            BankGatewayKind::Off => {
                self.bank_gateway = None;
                self.simulated_bank = None;
            }
        }
        self
    }
}

// ---- a directory of files ----

/// Writes each file as `<message id>.xml` into a directory, atomically (a temporary name, then
/// a rename): a file channel never picks up half a file, and the same file again replaces
/// itself with the same bytes.
#[derive(Debug)]
pub struct FileDropGateway {
    dir: PathBuf,
}

#[async_trait::async_trait]
impl BankGateway for FileDropGateway {
    fn name(&self) -> &'static str {
        "files"
    }

    async fn hand_over(&self, file: &BankFile) -> Result<(), BankGatewayError> {
        // Message ids are the bank run's own (letters and digits): safe as a file name.
        if !file.message_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(BankGatewayError::Refused(
                "the message id is not a safe file name".into(),
            ));
        }
        let target = self.dir.join(format!("{}.xml", file.message_id));
        let partial = self.dir.join(format!(".{}.xml.partial", file.message_id));
        let unreachable = |e: std::io::Error| BankGatewayError::Unreachable(e.to_string());
        tokio::fs::write(&partial, file.content.as_bytes())
            .await
            .map_err(unreachable)?;
        tokio::fs::rename(&partial, &target)
            .await
            .map_err(unreachable)?;
        Ok(())
    }
}

// ---- the use cases around them ----

/// What one bank round did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct BankRound {
    /// Files prepared by this round.
    pub files_prepared: u32,
    /// Payouts those files carry.
    pub payouts_sent: u32,
    /// Files the bank took in this round (new ones, and any left over from before a crash).
    pub files_handed_over: u32,
    /// Statements of the simulated bank imported in this round.
    pub statements_imported: u32,
}

/// Files handed over per round; the rest go in the next.
const HAND_OVER_BATCH: u64 = 100;

/// One bank round: for each institution with pending payouts, a run (one transaction per
/// institution: the payouts claimed and the files stored together), then every file not yet
/// taken handed to the gateway after the commit and marked taken, then the simulated bank's
/// statements imported. Without a gateway nothing is prepared: payouts wait in `pending`.
pub async fn bank_round(state: &AppState) -> CoreResult<BankRound> {
    let mut round = BankRound::default();
    let Some(gateway) = state.bank_gateway.clone() else {
        return Ok(round);
    };
    for institution in institutions_with_pending_payouts(&state.db).await? {
        let files = state
            .in_write_txn(async move |txn, core| {
                runs::prepare_run_in_txn(txn, &core.clock, institution).await
            })
            .await?;
        round.files_prepared += u32::try_from(files.len()).unwrap_or(u32::MAX);
        round.payouts_sent += files.iter().map(|f| f.transfers).sum::<u32>();
    }
    for file in runs::files_to_hand_over(&state.db, HAND_OVER_BATCH).await? {
        match gateway.hand_over(&file).await {
            Ok(()) => {
                let id = file.id;
                state
                    .in_write_txn(async move |txn, core| {
                        runs::mark_handed_over_in_txn(txn, &core.clock, id).await
                    })
                    .await?;
                round.files_handed_over += 1;
            }
            // Left for the next round; the bank refuses nothing it took twice.
            Err(error) => tracing::warn!(
                %error, gateway = gateway.name(), message_id = %file.message_id,
                "a bank file was not handed over"
            ),
        }
    }
    round.statements_imported = deliver_statements(state).await?;
    Ok(round)
}

async fn institutions_with_pending_payouts(db: &impl ConnectionTrait) -> CoreResult<Vec<PartyId>> {
    use holdfast_core::banking::payouts::PayoutStatus;
    use holdfast_core::entities::payouts as payout_rows;
    Ok(payout_rows::Entity::find()
        .select_only()
        .column(payout_rows::Column::InstitutionPartyId)
        .distinct()
        .filter(payout_rows::Column::Status.eq(PayoutStatus::Pending))
        .into_tuple::<Uuid>()
        .all(db)
        .await?
        .into_iter()
        .map(PartyId::from_uuid)
        .collect())
}

/// Imports `xml` (a camt.053 or camt.054) for `institution`: the use case behind an upload
/// and the simulated bank's deliveries. The same message id again is `None`.
pub async fn import_statement(
    state: &AppState,
    institution: PartyId,
    xml: String,
) -> CoreResult<Option<ImportSummary>> {
    let applied = state
        .in_write_txn(async move |txn, core| {
            statements::import_in_txn(txn, &core.clock, institution, &xml).await
        })
        .await?;
    Ok(match applied {
        holdfast_core::ledger::Applied::New(summary) => Some(summary),
        holdfast_core::ledger::Applied::Already(_) => None,
    })
}

/// Imports the simulated bank's statements Holdfast has not imported yet, as a bank's file
/// channel would deliver them. Imports are idempotent by message id, so one delivered again
/// after a crash (imported, not yet marked) changes nothing. Returns how many were new.
pub async fn deliver_statements(state: &AppState) -> CoreResult<u32> {
    let Some(bank) = state.simulated_bank.clone() else {
        return Ok(0);
    };
    let mut imported = 0;
    for (institution, message_id, xml) in bank.undelivered(HAND_OVER_BATCH).await? {
        match import_statement(state, institution, xml).await {
            Ok(summary) => {
                imported += u32::from(summary.is_some());
                bank.mark_delivered(&message_id).await?;
            }
            Err(error) => {
                tracing::warn!(%error, %message_id, "a simulated bank statement was not imported");
            }
        }
    }
    Ok(imported)
}
