//! Delivers outbox messages: texts through the phone gateway, events to webhook endpoints as a
//! signed POST. Runs in the outbox worker only, outside any transaction.

use holdfast_core::outbox::{Channel, Outbound, OutboxSender, PhoneMessage, SendFailure};
use holdfast_core::phone::PhoneGateway;
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

#[async_trait::async_trait]
impl OutboxSender for Courier {
    async fn send(&self, message: &Outbound) -> Result<Option<u16>, SendFailure> {
        match message.channel {
            Channel::Phone => {
                let text: PhoneMessage =
                    serde_json::from_str(&message.payload).map_err(|e| SendFailure {
                        status_code: None,
                        reason: format!("unreadable phone message: {e}"),
                    })?;
                self.gateway
                    .send(&text)
                    .await
                    .map(|()| None)
                    .map_err(|e| SendFailure {
                        status_code: None,
                        reason: e.to_string(),
                    })
            }
            Channel::Webhook => self.send_webhook(message).await,
        }
    }
}
