//! What a code is bound to, and the key its MAC is made with: the digest over exactly what the
//! phone shows (PSD2 dynamic linking), and the server-side key derived from the service secret.

use super::{ChallengePurpose, HmacSha256};
use crate::ids::{ChallengeId, PartyId};
use crate::money::Money;
use hmac::Mac;
use sha2::{Digest, Sha256};
use std::fmt;
use uuid::Uuid;

/// What the person confirms, exactly as shown on the phone.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChallengeBinding {
    pub amount: Option<Money>,
    pub payee: Option<String>,
    pub order_number: Option<String>,
    /// Any further terms the person approves: a payment method ("3 monthly installments"), a
    /// product, a merchant.
    pub terms: Option<String>,
}

impl ChallengeBinding {
    /// SHA-256 over a length-prefixed encoding of purpose, party and every bound field, so
    /// that no two different bindings share a digest.
    pub fn digest(&self, purpose: ChallengePurpose, party: PartyId) -> String {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        field(b"holdfast-challenge-binding-v1");
        field(purpose.as_str().as_bytes());
        field(party.uuid().as_bytes());
        // Each optional field is tagged present or absent, so no value can stand for absence.
        match &self.amount {
            Some(money) => {
                field(b"amount");
                field(money.amount().to_string().as_bytes());
                field(money.currency().code().as_bytes());
            }
            None => field(b"no-amount"),
        }
        match &self.payee {
            Some(payee) => {
                field(b"payee");
                field(payee.as_bytes());
            }
            None => field(b"no-payee"),
        }
        match &self.order_number {
            Some(number) => {
                field(b"order-number");
                field(number.as_bytes());
            }
            None => field(b"no-order-number"),
        }
        match &self.terms {
            Some(terms) => {
                field(b"terms");
                field(terms.as_bytes());
            }
            None => field(b"no-terms"),
        }
        hex::encode(hasher.finalize())
    }
}

/// HMAC-SHA256 keyed with `key`.
pub fn keyed_mac(key: &[u8]) -> HmacSha256 {
    match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// The server-side key that MACs the codes. Derived from the service secret.
#[derive(Clone)]
pub struct ChallengeKeys {
    mac_key: [u8; 32],
}

impl ChallengeKeys {
    pub fn derive(secret: &[u8]) -> ChallengeKeys {
        let mut mac = keyed_mac(secret);
        mac.update(b"holdfast challenge code mac v1");
        ChallengeKeys {
            mac_key: mac.finalize().into_bytes().into(),
        }
    }

    /// A stand-in subject for login attempts on a card number that cannot log in (unknown,
    /// blocked or replaced): stable per number, so decoys are counted per number as real
    /// logins are per party, and keyed, so the number cannot be read back from it.
    pub fn decoy_subject(&self, card_number: &str) -> Uuid {
        let mut mac = keyed_mac(&self.mac_key);
        mac.update(b"holdfast login decoy subject v1");
        mac.update(card_number.as_bytes());
        let bytes = mac.finalize().into_bytes();
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[..16]);
        uuid::Builder::from_random_bytes(id).into_uuid()
    }

    pub(super) fn code_mac(&self, id: ChallengeId, digest: &str, code: &str) -> HmacSha256 {
        let mut mac = keyed_mac(&self.mac_key);
        mac.update(id.uuid().as_bytes());
        mac.update(digest.as_bytes());
        mac.update(code.as_bytes());
        mac
    }
}

impl fmt::Debug for ChallengeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChallengeKeys(…)")
    }
}
