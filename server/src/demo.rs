//! `--demo`: a supplier, a shopper with a phone and a prepaid balance, and a small catalogue,
//! so that a newcomer can try a purchase a minute after `cargo run`. Passwords are random and
//! printed at each start (set anew if the demo already exists).

use crate::state::AppState;
use holdfast_core::cards::{self, CardId, CardNumber, CardStatus};
use holdfast_core::entities::cards as card_rows;
use holdfast_core::funding::DEFAULT_INSTITUTION;
use holdfast_core::onboarding::{self, NewShopper, StaffCredentials};
use holdfast_core::parties::{self, Role};
use holdfast_core::phone_number::PhoneNumber;
use holdfast_core::{CoreError, Currency, Money};
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
    /// The supplier's second password: it confirms a payout destination.
    pub supplier_second_password: String,
    pub carrier_password: String,
    pub shopper_card: CardNumber,
    pub insurance: InsuranceCast,
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
    // A user that does not exist yet is not an error here: it is created below.
    let reset = state
        .in_write_txn(async |txn, _| {
            Ok::<_, CoreError>(parties::reset_password_in_txn(txn, username, hash).await)
        })
        .await?;
    if reset.is_ok() {
        return Ok((password, false));
    }
    crate::create_staff(state, role, display_name, username, &password).await?;
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
    let supplier_second_password = random_password();
    let second_hash =
        parties::hash_password_off_thread(&state.core.passwords, &supplier_second_password).await?;
    state
        .in_write_txn(async move |txn, _| {
            parties::reset_second_password_in_txn(txn, supplier.id, second_hash).await
        })
        .await?;
    // The demo supplier's parcels go to the demo carrier; the platform keeps 5 %.
    state
        .in_write_txn(async move |txn, core| {
            sellers::set_terms_in_txn(
                txn,
                &core.clock,
                supplier.id,
                SellerTerms {
                    commission: CommissionRate::parse("0.05")?,
                    default_distributor: Some(carrier.id),
                },
            )
            .await
        })
        .await?;
    if supplier_is_new {
        for (name, price, audience) in [
            ("Espresso beans, 1 kg", "24.00", Audience::All),
            ("Ceramic pour-over dripper", "32.50", Audience::All),
            ("Gooseneck kettle", "79.90", Audience::All),
            ("Single-malt whisky, 70 cl", "58.00", Audience::AdultOnly),
            ("Office espresso machine", "1450.00", Audience::BusinessOnly),
        ] {
            state
                .in_write_txn(async |txn, core| {
                    catalogue::create_commodity_in_txn(
                        txn,
                        core,
                        supplier.id,
                        NewCommodity {
                            name: name.to_owned(),
                            manufacturer: "Acme Roasters".to_owned(),
                            description: String::new(),
                            price: Money::parse(price, Currency::USD)?,
                            audience,
                        },
                    )
                    .await
                })
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
            // With the simulated bank, the shopper's 500.00 arrives as a bank transfer with
            // its deposit reference, so the demo's day reconciles to zero differences.
            let by_bank = state.simulated_bank.is_some();
            let opening = Money::parse("500.00", Currency::USD)?;
            let new = NewShopper {
                display_name: "Demo Shopper".to_owned(),
                phone,
                currency: Currency::USD,
                initial_deposit: (!by_bank).then_some(opening),
                delivery_address: Some("12 Sejong-daero, Jung-gu, Seoul".to_owned()),
            };
            let issued = state
                .in_write_txn(async |txn, core| {
                    onboarding::onboard_shopper_in_txn(txn, core, new).await
                })
                .await?;
            if by_bank {
                seed_bank_day(state, issued.funding.id, opening).await?;
            }
            issued.card.number
        }
    };
    let pharmacy = seed_pharmacy_cast(state).await?;
    Ok(Demo {
        operator_password,
        supplier_password,
        supplier_second_password,
        carrier_password,
        shopper_card,
        insurance: seed_insurance_cast(state).await?,
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
  supplier  username {SUPPLIER_USERNAME}   password {supplier_password}   second password {supplier_second_password}
  carrier   username {CARRIER_USERNAME}    password {carrier_password}
  shopper   card {shopper_card}   phone {SHOPPER_PHONE}   500.00 USD prepaid
{insurance}{pharmacy}The console: open {base_url}/sign-in in a browser and sign in as one of them
  (the shopper with the card number; its code arrives on the phone page
  {base_url}/phone/{SHOPPER_PHONE}{phone_key}).
Paste this into another terminal, then follow the walkthrough in README.md:

export HOLDFAST={base_url} OPERATOR_PASSWORD={operator_password} SUPPLIER_PASSWORD={supplier_password} SUPPLIER_SECOND_PASSWORD={supplier_second_password} CARRIER_PASSWORD={carrier_password} CARD={shopper_card} PHONE={SHOPPER_PHONE}{simulator}
"#,
        operator_password = demo.operator_password,
        supplier_password = demo.supplier_password,
        supplier_second_password = demo.supplier_second_password,
        carrier_password = demo.carrier_password,
        shopper_card = demo.shopper_card,
        insurance = demo.insurance.sign_ins(),
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

pub const INSURER_USERNAME: &str = "demo-insurer";
pub const SERVICE_COMPANY_USERNAME: &str = "demo-service";
pub const INSTITUTION_USERNAME: &str = "demo-bank";
/// The demo bank's card numbers start with these four digits.
pub const INSTITUTION_CODE: &str = "7001";
pub const DEMO_PRODUCT: &str = "Travel cover, 12 months";

/// The insurance and institution desks of the demo: an insurer with a product on sale, its
/// service company, and a bank.
#[derive(Debug)]
pub struct InsuranceCast {
    pub insurer_password: String,
    pub service_company_password: String,
    pub institution_password: String,
}

impl InsuranceCast {
    /// One sign-in line per role.
    pub fn sign_ins(&self) -> String {
        format!(
            "  insurer          username {INSURER_USERNAME}   password {}\n  service company  username {SERVICE_COMPANY_USERNAME}   password {}\n  institution      username {INSTITUTION_USERNAME}      password {}\n",
            self.insurer_password, self.service_company_password, self.institution_password
        )
    }
}

/// A fresh password for the staff login `username` if it exists (the demo ran before).
async fn reset_staff_password(state: &AppState, username: &str) -> anyhow::Result<(String, bool)> {
    let password = random_password();
    let hash = parties::hash_password_off_thread(&state.core.passwords, &password).await?;
    let reset = state
        .in_write_txn(async |txn, _| {
            Ok::<_, sea_orm::DbErr>(parties::reset_password_in_txn(txn, username, hash).await)
        })
        .await?;
    Ok((password, reset.is_ok()))
}

/// The default institution's own account at the simulated bank, the demo shopper's opening
/// deposit arriving there by bank transfer with its RF reference, and the day closed and
/// reconciled: clean.
async fn seed_bank_day(
    state: &AppState,
    prepaid: holdfast_core::ids::AccountId,
    opening: Money,
) -> anyhow::Result<()> {
    use holdfast_core::banking::destinations::BankAccount;
    use holdfast_core::banking::runs::{self, InstitutionBankAccount};
    use holdfast_core::banking::{reconciliation, statements};
    use holdfast_core::funding::DEFAULT_INSTITUTION;
    let Some(bank) = state.simulated_bank.clone() else {
        return Ok(());
    };
    let own = InstitutionBankAccount {
        institution: DEFAULT_INSTITUTION,
        currency: Currency::USD,
        account: BankAccount::iban("DE89 3704 0044 0532 0130 00")?,
        bic: None,
        holder_name: "Holdfast Default Bank".to_owned(),
    };
    state
        .in_write_txn(async |txn, core| {
            runs::set_institution_account_in_txn(txn, &core.clock, &own).await
        })
        .await?;
    let reference = state
        .in_write_txn(async |txn, core| {
            statements::deposit_reference_in_txn(txn, &core.clock, prepaid).await
        })
        .await?;
    bank.receive_credit(DEFAULT_INSTITUTION, opening, Some(reference))
        .await?;
    let today = state.core.clock.now().date_naive();
    bank.close_day(DEFAULT_INSTITUTION, today).await?;
    crate::bank_gateways::deliver_statements(state).await?;
    state
        .in_write_txn(async |txn, core| {
            reconciliation::run_in_txn(txn, &core.clock, DEFAULT_INSTITUTION, Currency::USD, today)
                .await
        })
        .await?;
    Ok(())
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
                state
                    .in_write_txn(async |txn, core| {
                        rx_parties::create_hospital_in_txn(
                            txn,
                            core,
                            "St Mary's Hospital",
                            DEMO_HOSPITAL_CODE,
                        )
                        .await
                    })
                    .await?
                    .hospital_id
            }
        };
        let staff = NewStaff {
            display_name: "Dr Seo-yeon Kim".to_owned(),
            username: PRESCRIBER_USERNAME.to_owned(),
            password: prescriber_password.clone(),
        }
        .hash(&state.core.passwords)
        .await?;
        state
            .in_write_txn(async move |txn, core| {
                rx_parties::add_prescriber_in_txn(txn, core, hospital, staff).await
            })
            .await?;
    }
    let (drugstore_password, exists) = reset_staff_password(state, DRUGSTORE_USERNAME).await?;
    if !exists {
        let staff = NewStaff {
            display_name: DEMO_DRUGSTORE_NAME.to_owned(),
            username: DRUGSTORE_USERNAME.to_owned(),
            password: drugstore_password.clone(),
        }
        .hash(&state.core.passwords)
        .await?;
        state
            .in_write_txn(async move |txn, core| {
                rx_parties::create_drugstore_in_txn(
                    txn,
                    core,
                    staff,
                    holdfast_core::BasisPoints::ZERO,
                )
                .await
            })
            .await?;
    }
    Ok(PharmacyCast {
        prescriber_password,
        drugstore_password,
    })
}

/// Sets a new random password for `username`; `None` when nobody has that username yet.
async fn reset_demo_password(state: &AppState, username: &str) -> anyhow::Result<Option<String>> {
    let password = random_password();
    let hash = parties::hash_password_off_thread(&state.core.passwords, &password).await?;
    let reset = state
        .in_write_txn(async |txn, _| {
            Ok::<_, sea_orm::DbErr>(parties::reset_password_in_txn(txn, username, hash).await)
        })
        .await?;
    Ok(reset.is_ok().then_some(password))
}

async fn seed_insurance_cast(state: &AppState) -> anyhow::Result<InsuranceCast> {
    use holdfast_insurance::products::{self, NewProduct, PaymentPlan};
    let (service_company_password, _) = ensure_user(
        state,
        Role::Distributor,
        "Safe Hands Services",
        SERVICE_COMPANY_USERNAME,
    )
    .await?;
    let insurer_password = match reset_demo_password(state, INSURER_USERNAME).await? {
        Some(password) => password,
        None => {
            let password = random_password();
            let credentials =
                StaffCredentials::hash(&state.core.passwords, INSURER_USERNAME, &password, None)
                    .await?;
            let (insurer, _) = state
                .in_write_txn(async |txn, core| {
                    products::onboard_insurer_in_txn(
                        txn,
                        core,
                        "Harbour Insurance",
                        credentials,
                        None,
                    )
                    .await
                })
                .await?;
            let service = parties::verify_password(
                &state.db,
                &state.core.passwords,
                SERVICE_COMPANY_USERNAME,
                &service_company_password,
            )
            .await?;
            let product = NewProduct {
                name: DEMO_PRODUCT.to_owned(),
                coverage: "Medical costs abroad, delayed baggage and cancelled trips.".to_owned(),
                coverage_amount: Money::parse("10000.00", Currency::USD)?,
                premium: Money::parse("12.50", Currency::USD)?,
                term_months: 12,
                payment_plan: PaymentPlan::Monthly,
                service_company: service.id,
                grace_days: None,
                free_look_days: None,
            };
            state
                .in_write_txn(async move |txn, core| {
                    products::create_product_in_txn(txn, core, insurer.id, product).await
                })
                .await?;
            password
        }
    };
    let institution_password = match reset_demo_password(state, INSTITUTION_USERNAME).await? {
        Some(password) => password,
        None => {
            let password = random_password();
            let credentials = StaffCredentials::hash(
                &state.core.passwords,
                INSTITUTION_USERNAME,
                &password,
                None,
            )
            .await?;
            let new = holdfast_core::funding::NewInstitution {
                display_name: "Demo Savings Bank".to_owned(),
                code: INSTITUTION_CODE.to_owned(),
                kind: holdfast_core::funding::InstitutionKind::Bank,
                shares_freezing_with: None,
                credit_class_caps: Vec::new(),
                card_fee: holdfast_core::BasisPoints::ZERO,
            };
            state
                .in_write_txn(async move |txn, core| {
                    onboarding::create_institution_in_txn(txn, core, new, credentials).await
                })
                .await?;
            password
        }
    };
    Ok(InsuranceCast {
        insurer_password,
        service_company_password,
        institution_password,
    })
}
