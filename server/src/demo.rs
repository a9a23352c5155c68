//! `--demo`: a supplier, a shopper with a phone and a prepaid balance, and a small catalogue,
//! so that a newcomer can try a purchase a minute after `cargo run`. Passwords are random and
//! printed at each start (set anew if the demo already exists).

use crate::state::AppState;
use holdfast_core::cards::{self, CardId, CardNumber, CardStatus};
use holdfast_core::entities::cards as card_rows;
use holdfast_core::funding::DEFAULT_INSTITUTION;
use holdfast_core::onboarding::{self, NewShopper, NewSupplier};
use holdfast_core::parties::{self, Role};
use holdfast_core::phone_number::PhoneNumber;
use holdfast_core::{Currency, Money, db};
use holdfast_retail::catalogue::{self, Audience, CommissionRate, NewCommodity};
use holdfast_retail::sellers::{self, SellerTerms};
use rand::distr::{Alphanumeric, SampleString};
use sea_orm::QueryFilter;
use sea_orm::entity::prelude::*;

pub const OPERATOR_USERNAME: &str = "demo-operator";
pub const SUPPLIER_USERNAME: &str = "demo-supplier";
pub const CARRIER_USERNAME: &str = "demo-carrier";
pub const SHOPPER_PHONE: &str = "+821012345678";

#[derive(Debug)]
pub struct Demo {
    pub operator_password: String,
    pub supplier_password: String,
    pub carrier_password: String,
    pub shopper_card: CardNumber,
    pub pharmacy: PharmacyCast,
}

fn random_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 20)
}

async fn ensure_user(
    state: &AppState,
    role: Role,
    display_name: &str,
    username: &str,
) -> anyhow::Result<(String, bool)> {
    let password = random_password();
    let hash = parties::hash_password_off_thread(&state.core.passwords, &password).await?;
    let txn = db::begin_write(&state.db).await?;
    let reset = parties::reset_password_in_txn(&txn, username, hash).await;
    txn.commit().await?;
    if reset.is_ok() {
        return Ok((password, false));
    }
    match role {
        Role::Operator => {
            onboarding::create_operator(&state.db, &state.core, display_name, username, &password)
                .await?;
        }
        Role::Distributor => {
            onboarding::onboard_staff(
                &state.db,
                &state.core,
                Role::Distributor,
                display_name,
                username,
                &password,
            )
            .await?;
        }
        _ => {
            onboarding::onboard_supplier(
                &state.db,
                &state.core,
                NewSupplier {
                    display_name: display_name.to_owned(),
                    username: username.to_owned(),
                    password: password.clone(),
                    second_password: None,
                },
            )
            .await?;
        }
    }
    Ok((password, true))
}

pub async fn seed(state: &AppState) -> anyhow::Result<Demo> {
    let (operator_password, _) =
        ensure_user(state, Role::Operator, "Demo Operator", OPERATOR_USERNAME).await?;
    let (supplier_password, supplier_is_new) =
        ensure_user(state, Role::Supplier, "Acme Supplies", SUPPLIER_USERNAME).await?;
    let (carrier_password, _) =
        ensure_user(state, Role::Distributor, "Swift Couriers", CARRIER_USERNAME).await?;
    let carrier = parties::verify_password(
        &state.db,
        &state.core.passwords,
        CARRIER_USERNAME,
        &carrier_password,
    )
    .await?;
    let supplier = parties::verify_password(
        &state.db,
        &state.core.passwords,
        SUPPLIER_USERNAME,
        &supplier_password,
    )
    .await?;
    // The demo supplier's parcels go to the demo carrier; the platform keeps 5 %.
    sellers::set_terms(
        &state.db,
        &state.core.clock,
        supplier.id,
        SellerTerms {
            commission: CommissionRate::parse("0.05")?,
            default_distributor: Some(carrier.id),
        },
    )
    .await?;
    if supplier_is_new {
        for (name, price, audience) in [
            ("Espresso beans, 1 kg", "24.00", Audience::All),
            ("Ceramic pour-over dripper", "32.50", Audience::All),
            ("Gooseneck kettle", "79.90", Audience::All),
            ("Single-malt whisky, 70 cl", "58.00", Audience::AdultOnly),
            ("Office espresso machine", "1450.00", Audience::BusinessOnly),
        ] {
            catalogue::create_commodity(
                &state.db,
                &state.core,
                supplier.id,
                NewCommodity {
                    name: name.to_owned(),
                    manufacturer: "Acme Roasters".to_owned(),
                    description: String::new(),
                    price: Money::parse(price, Currency::USD)?,
                    audience,
                },
            )
            .await?;
        }
    }
    let phone = PhoneNumber::parse(SHOPPER_PHONE)?;
    let existing = card_rows::Entity::find()
        .filter(card_rows::Column::InstitutionPartyId.eq(DEFAULT_INSTITUTION.uuid()))
        .filter(card_rows::Column::PhoneE164.eq(phone.e164()))
        .filter(card_rows::Column::Status.eq(CardStatus::Active))
        .one(&state.db)
        .await?;
    let shopper_card = match existing {
        Some(row) => {
            cards::get_card(&state.db, CardId::from_uuid(row.id))
                .await?
                .number
        }
        None => {
            onboarding::onboard_shopper(
                &state.db,
                &state.core,
                NewShopper {
                    display_name: "Demo Shopper".to_owned(),
                    phone,
                    currency: Currency::USD,
                    initial_deposit: Some(Money::parse("500.00", Currency::USD)?),
                    delivery_address: Some("12 Sejong-daero, Jung-gu, Seoul".to_owned()),
                },
            )
            .await?
            .card
            .number
        }
    };
    let pharmacy = seed_pharmacy_cast(state).await?;
    Ok(Demo {
        operator_password,
        supplier_password,
        carrier_password,
        shopper_card,
        pharmacy,
    })
}

/// What the demo prints: who exists, and the variables README.md's walkthrough uses.
pub fn instructions(demo: &Demo, base_url: &str, simulator_key: Option<&str>) -> String {
    let simulator = simulator_key.map_or(String::new(), |key| format!(" SIMULATOR_KEY={key}"));
    let phone_key = simulator_key.map_or(String::new(), |key| {
        format!(", which asks once for the simulator key {key}")
    });
    format!(
        r#"
Holdfast demo is ready at {base_url}
  operator  username {OPERATOR_USERNAME}   password {operator_password}
  supplier  username {SUPPLIER_USERNAME}   password {supplier_password}
  carrier   username {CARRIER_USERNAME}    password {carrier_password}
  shopper   card {shopper_card}   phone {SHOPPER_PHONE}   500.00 USD prepaid
{pharmacy}The console: open {base_url}/sign-in in a browser and sign in as one of them
  (the shopper with the card number; its code arrives on the phone page
  {base_url}/phone/{SHOPPER_PHONE}{phone_key}).
Paste this into another terminal, then follow the walkthrough in README.md:

export HOLDFAST={base_url} OPERATOR_PASSWORD={operator_password} SUPPLIER_PASSWORD={supplier_password} CARRIER_PASSWORD={carrier_password} CARD={shopper_card} PHONE={SHOPPER_PHONE}{simulator}
"#,
        operator_password = demo.operator_password,
        supplier_password = demo.supplier_password,
        carrier_password = demo.carrier_password,
        shopper_card = demo.shopper_card,
        pharmacy = demo.pharmacy.sign_ins(&demo.shopper_card),
    )
}

pub const PRESCRIBER_USERNAME: &str = "demo-prescriber";
pub const DRUGSTORE_USERNAME: &str = "demo-drugstore";
pub const DEMO_HOSPITAL_CODE: &str = "DEMO01";
pub const DEMO_DRUGSTORE_NAME: &str = "Hanil Pharmacy";

/// The pharmacy's cast: a hospital with a prescriber, a member drugstore (no commission, so
/// what it is paid is the price), and as the patient the demo shopper, whose EC card is the
/// medical card (any EC card is).
#[derive(Debug)]
pub struct PharmacyCast {
    pub prescriber_password: String,
    pub drugstore_password: String,
}

impl PharmacyCast {
    /// The demo's lines for the prescriber, the drugstore and the patient.
    pub fn sign_ins(&self, patient_card: &CardNumber) -> String {
        format!(
            "  prescriber username {PRESCRIBER_USERNAME} password {}   (St Mary's Hospital)\n  \
             drugstore username {DRUGSTORE_USERNAME}  password {}   ({DEMO_DRUGSTORE_NAME})\n  \
             patient   card {patient_card} (the shopper's card is the medical card)   phone {SHOPPER_PHONE}\n",
            self.prescriber_password, self.drugstore_password
        )
    }
}

/// A fresh password for the staff login `username` if it exists (the demo ran before).
async fn reset_staff_password(state: &AppState, username: &str) -> anyhow::Result<(String, bool)> {
    let password = random_password();
    let hash = parties::hash_password_off_thread(&state.core.passwords, &password).await?;
    let txn = db::begin_write(&state.db).await?;
    let reset = parties::reset_password_in_txn(&txn, username, hash).await;
    txn.commit().await?;
    Ok((password, reset.is_ok()))
}

pub async fn seed_pharmacy_cast(state: &AppState) -> anyhow::Result<PharmacyCast> {
    use holdfast_pharmacy::entities::hospitals;
    use holdfast_pharmacy::parties::{self as rx_parties, HospitalId, NewStaff};
    let (prescriber_password, exists) = reset_staff_password(state, PRESCRIBER_USERNAME).await?;
    if !exists {
        let found = hospitals::Entity::find()
            .filter(hospitals::Column::Code.eq(DEMO_HOSPITAL_CODE))
            .one(&state.db)
            .await?;
        let hospital = match found {
            Some(row) => HospitalId::from_uuid(row.id),
            None => {
                rx_parties::create_hospital(
                    &state.db,
                    &state.core,
                    "St Mary's Hospital",
                    DEMO_HOSPITAL_CODE,
                )
                .await?
                .hospital_id
            }
        };
        rx_parties::add_prescriber(
            &state.db,
            &state.core,
            hospital,
            NewStaff {
                display_name: "Dr Seo-yeon Kim".to_owned(),
                username: PRESCRIBER_USERNAME.to_owned(),
                password: prescriber_password.clone(),
            },
        )
        .await?;
    }
    let (drugstore_password, exists) = reset_staff_password(state, DRUGSTORE_USERNAME).await?;
    if !exists {
        rx_parties::create_drugstore(
            &state.db,
            &state.core,
            NewStaff {
                display_name: DEMO_DRUGSTORE_NAME.to_owned(),
                username: DRUGSTORE_USERNAME.to_owned(),
                password: drugstore_password.clone(),
            },
            holdfast_core::BasisPoints::ZERO,
        )
        .await?;
    }
    Ok(PharmacyCast {
        prescriber_password,
        drugstore_password,
    })
}
