//! Phone channel adapters beside the built-in simulator: an SMS provider and an ARS (voice
//! call, keypad answer) provider, both reached through a configurable HTTP endpoint. They run
//! only in the outbox worker, never inside a database transaction; a failed send is retried by
//! the outbox with backoff.

use holdfast_core::outbox::PhoneMessage;
use holdfast_core::phone::{GatewayError, PhoneGateway};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A text message; the person reads the code and types it.
    Sms,
    /// A voice call that reads the message out and collects the code on the keypad.
    Ars,
}

/// Sends phone messages to a provider's HTTP endpoint, authenticated with a bearer token.
#[derive(Debug)]
pub struct HttpPhoneGateway {
    channel: Channel,
    endpoint: reqwest::Url,
    token: SecretString,
    client: reqwest::Client,
}

/// What the provider receives. `reference` lets its inbound webhook name the challenge the
/// answer is for.
#[derive(Serialize)]
struct Outbound<'a> {
    channel: &'static str,
    to: &'a str,
    text: &'a str,
    reference: Option<String>,
    /// ARS only: how many keypad digits to collect.
    #[serde(skip_serializing_if = "Option::is_none")]
    collect_digits: Option<usize>,
}

impl HttpPhoneGateway {
    pub fn new(channel: Channel, endpoint: &str, token: SecretString) -> anyhow::Result<Self> {
        let endpoint = reqwest::Url::parse(endpoint)?;
        anyhow::ensure!(
            matches!(endpoint.scheme(), "http" | "https"),
            "the phone gateway URL must be http or https"
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(HttpPhoneGateway {
            channel,
            endpoint,
            token,
            client,
        })
    }
}

#[async_trait::async_trait]
impl PhoneGateway for HttpPhoneGateway {
    fn name(&self) -> &'static str {
        match self.channel {
            Channel::Sms => "sms",
            Channel::Ars => "ars",
        }
    }

    async fn send(&self, message: &PhoneMessage) -> Result<(), GatewayError> {
        let body = Outbound {
            channel: self.name(),
            to: message.to.e164(),
            text: &message.body,
            reference: message.challenge.map(|c| c.to_string()),
            collect_digits: (self.channel == Channel::Ars && message.challenge.is_some())
                .then_some(holdfast_core::challenge::CODE_DIGITS),
        };
        let response = self
            .client
            .post(self.endpoint.clone())
            .bearer_auth(self.token.expose_secret())
            .json(&body)
            .send()
            .await
            // The error text names the URL, never the number or the message.
            .map_err(|e| GatewayError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(GatewayError::Refused(format!("provider answered {status}")))
        }
    }
}
