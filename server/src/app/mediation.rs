//! An operator mediates a disputed order of any vertical: release it, refund it or split it,
//! with a penalty for the party at fault. The vertical decides the lock order and its own
//! follow-up (a retail order's view, a prescription's state); core moves the money.

use super::AppResult;
use holdfast_core::escrow::{self, EscrowCase, Fault, Mediation, PayoutSplit};
use holdfast_core::order_number::OrderNumber;
use holdfast_core::{Core, CoreError, Money, Vertical};
use holdfast_pharmacy::payment::MediationResult as PrescriptionMediation;
use holdfast_retail::orders::{self, OrderView};
use sea_orm::DatabaseTransaction;

/// Where the money goes.
#[derive(Debug, Clone, Copy)]
pub enum Decision {
    /// All of it to the seller.
    Release,
    /// All of it back to the buyer.
    Refund,
    /// This much to the seller (before commission and fees), the rest back to the buyer.
    Split(Money),
}

impl Decision {
    /// A split: it must name what goes to the seller.
    pub fn split(to_seller: Option<Money>) -> AppResult<Decision> {
        to_seller
            .map(Decision::Split)
            .ok_or_else(|| CoreError::invalid("a split names what goes to the seller").into())
    }
}

#[derive(Debug, Clone)]
pub struct MediationOrder {
    pub decision: Decision,
    pub penalty: Option<(Fault, Money)>,
    pub note: String,
}

/// What a mediation did.
#[derive(Debug)]
pub struct Mediated {
    pub case: EscrowCase,
    pub split: PayoutSplit,
    /// A retail order as its seller now sees it.
    pub order: Option<OrderView>,
    /// A prescription's payment as the pharmacy vertical reports it.
    pub prescription: Option<PrescriptionMediation>,
}

#[tracing::instrument(name = "app.mediate", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn mediate_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    number: &OrderNumber,
    order: MediationOrder,
) -> AppResult<Mediated> {
    // A case's vertical and amount never change, so they are read before the vertical takes
    // its locks in its own order; the state is checked under those locks.
    let found = escrow::find_case_by_number(txn, number)
        .await?
        .ok_or(CoreError::NotFound("order"))?;
    let mediation = Mediation {
        to_seller: match order.decision {
            Decision::Release => found.amount,
            Decision::Refund => Money::zero(found.amount.currency()),
            Decision::Split(to_seller) => to_seller,
        },
        penalty: order.penalty,
        note: order.note,
    };
    match found.vertical {
        Vertical::Retail => {
            let (view, split) = orders::mediate_order_in_txn(txn, core, number, mediation).await?;
            let case = escrow::get_case(txn, found.id).await?;
            Ok(Mediated {
                case,
                split,
                order: Some(view),
                prescription: None,
            })
        }
        Vertical::Pharmacy => {
            let result =
                holdfast_pharmacy::payment::mediate_in_txn(txn, core, number, mediation).await?;
            let case = escrow::get_case(txn, found.id).await?;
            let split = PayoutSplit {
                to_seller: result.released_to_drugstore,
                seller_net: result.drugstore_payout,
                commission: result.commission,
                institution_fee: result.institution_fee,
                penalty: result.penalty,
                refund: result.refunded_to_patient,
            };
            Ok(Mediated {
                case,
                split,
                order: None,
                prescription: Some(result),
            })
        }
        // A premium's case: the policy is never taken by a mediation (the insurance vertical's
        // lock order allows it), so the case alone is locked.
        Vertical::Insurance => {
            let mut case = escrow::lock_case_in_txn(txn, found.id).await?;
            let split = escrow::mediate_in_txn(txn, core, &mut case, mediation).await?;
            Ok(Mediated {
                case,
                split,
                order: None,
                prescription: None,
            })
        }
        Vertical::CardPresent => Err(CoreError::NotFound("order").into()),
    }
}
