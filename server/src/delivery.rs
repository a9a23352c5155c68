//! Delivers outbox messages: texts through the phone gateway, events to webhook endpoints as a
//! signed POST. Runs in the outbox worker only, outside any transaction.

use holdfast_core::outbox::{Channel, Outbound, OutboxSender, PhoneMessage, SendFailure};
use holdfast_core::phone::{GatewayError, PhoneGateway};
use holdfast_core::{Clock, webhooks};
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use std::time::Duration;

pub const EVENT_ID_HEADER: &str = "Holdfast-Event-Id";

#[derive(Debug, Clone)]
pub struct Courier {
    pub gateway: Arc<dyn PhoneGateway>,
    pub db: DatabaseConnection,
    pub clock: Clock,
    pub http: reqwest::Client,
}

impl Courier {
    pub fn new(gateway: Arc<dyn PhoneGateway>, db: DatabaseConnection, clock: Clock) -> Courier {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Courier {
            gateway,
            db,
            clock,
            http,
        }
    }

    async fn send_webhook(&self, message: &Outbound) -> Result<Option<u16>, SendFailure> {
        let failure = |reason: &str| SendFailure {
            status_code: None,
            reason: reason.to_owned(),
        };
        let endpoint = message
            .destination
            .parse::<uuid::Uuid>()
            .map_err(|_| failure("not an endpoint id"))?;
        let target = webhooks::target(&self.db, endpoint)
            .await
            .map_err(|e| failure(&e.log_description()))?
            .ok_or_else(|| failure("the endpoint no longer exists"))?;
        let body = message.payload.clone().into_bytes();
        let signature = webhooks::signature(&target.secret, self.clock.now().timestamp(), &body);
        let mut request = self
            .http
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhooks::SIGNATURE_HEADER, signature);
        if let Some(event) = message.event {
            request = request.header(EVENT_ID_HEADER, event.to_string());
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| failure(&e.without_url().to_string()))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            Ok(Some(status))
        } else {
            Err(SendFailure {
                status_code: Some(status),
                reason: format!("the receiver answered {status}"),
            })
        }
    }
}

fn phone_text(message: &Outbound) -> Result<PhoneMessage, SendFailure> {
    serde_json::from_str(&message.payload).map_err(|e| SendFailure {
        status_code: None,
        reason: format!("unreadable phone message: {e}"),
    })
}

fn gateway_failure(error: GatewayError) -> SendFailure {
    SendFailure {
        status_code: None,
        reason: error.to_string(),
    }
}

/// How many webhook POSTs one batch makes side by side.
const WEBHOOKS_IN_FLIGHT: usize = 16;

#[async_trait::async_trait]
impl OutboxSender for Courier {
    async fn send(&self, message: &Outbound) -> Result<Option<u16>, SendFailure> {
        match message.channel {
            Channel::Phone => {
                let text = phone_text(message)?;
                self.gateway
                    .send(&text)
                    .await
                    .map(|()| None)
                    .map_err(gateway_failure)
            }
            Channel::Webhook => self.send_webhook(message).await,
        }
    }

    /// Texts go to the gateway as one batch; webhooks are posted side by side, a slow receiver
    /// holding up no one else's.
    async fn send_many(&self, messages: &[Outbound]) -> Vec<Result<Option<u16>, SendFailure>> {
        let mut outcomes: Vec<Option<Result<Option<u16>, SendFailure>>> =
            messages.iter().map(|_| None).collect();
        let mut texts = Vec::new();
        let mut text_slots = Vec::new();
        for (slot, message) in messages.iter().enumerate() {
            if message.channel == Channel::Phone {
                match phone_text(message) {
                    Ok(text) => {
                        texts.push(text);
                        text_slots.push(slot);
                    }
                    Err(failure) => outcomes[slot] = Some(Err(failure)),
                }
            }
        }
        for (slot, sent) in text_slots
            .into_iter()
            .zip(self.gateway.send_many(&texts).await)
        {
            outcomes[slot] = Some(sent.map(|()| None).map_err(gateway_failure));
        }

        let mut posts = tokio::task::JoinSet::new();
        for (slot, message) in messages.iter().enumerate() {
            if message.channel != Channel::Webhook {
                continue;
            }
            if posts.len() >= WEBHOOKS_IN_FLIGHT
                && let Some(Ok((done, outcome))) = posts.join_next().await
            {
                outcomes[done] = Some(outcome);
            }
            let courier = self.clone();
            let message = message.clone();
            posts.spawn(async move { (slot, courier.send_webhook(&message).await) });
        }
        while let Some(joined) = posts.join_next().await {
            if let Ok((done, outcome)) = joined {
                outcomes[done] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    Err(SendFailure {
                        status_code: None,
                        reason: "the send was interrupted".to_owned(),
                    })
                })
            })
            .collect()
    }
}
