//! Delivers outbox messages: texts through the phone gateway, events to webhook endpoints as a
//! signed POST. Runs in the outbox worker only, outside any transaction.
//!
//! Webhook URLs are chosen by whoever registers them, so a POST goes only to an address that
//! was checked (see [`holdfast_core::webhook_target`]): an IP literal is checked here before
//! sending, and a host name is resolved by [`PublicOnlyResolver`], which drops the addresses
//! webhooks may not go to — the connection can only use an address that passed, so a name
//! that resolves differently the second time (DNS rebinding) gains nothing. No redirect is
//! followed and no proxy from the environment is used. A refused target is recorded in the
//! delivery log, and nothing is sent.

use holdfast_core::outbox::{Channel, Outbound, OutboxSender, PhoneMessage, SendFailure};
use holdfast_core::phone::{GatewayError, PhoneGateway};
use holdfast_core::webhook_target::{self, Forbidden, TargetError, TargetPolicy};
use holdfast_core::{Clock, webhooks};
use sea_orm::DatabaseConnection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const EVENT_ID_HEADER: &str = "Holdfast-Event-Id";

#[derive(Debug, Clone)]
pub struct Courier {
    pub gateway: Arc<dyn PhoneGateway>,
    pub db: DatabaseConnection,
    pub clock: Clock,
    /// `None` if the client could not be built (no TLS backend): webhooks then fail, rather
    /// than go out through a client without the checks.
    pub http: Option<reqwest::Client>,
    pub policy: TargetPolicy,
}

impl Courier {
    pub fn new(
        gateway: Arc<dyn PhoneGateway>,
        db: DatabaseConnection,
        clock: Clock,
        policy: TargetPolicy,
    ) -> Courier {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if policy == TargetPolicy::PublicOnly {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        let http = match builder.build() {
            Ok(client) => Some(client),
            Err(error) => {
                tracing::error!(error = %error, "could not build the webhook HTTP client");
                None
            }
        };
        Courier {
            gateway,
            db,
            clock,
            http,
            policy,
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
        // IP literals never reach the resolver: check them (and any old, unchecked row) here.
        let url = match webhook_target::check_url(&target.url, self.policy) {
            Ok(url) => url,
            Err(TargetError::Forbidden(why)) => return Err(refusal(why)),
            Err(TargetError::Malformed(why)) => return Err(failure(why)),
        };
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| failure("no HTTP client"))?;
        let body = message.payload.clone().into_bytes();
        let signature = webhooks::signature(&target.secret, self.clock.now().timestamp(), &body);
        let mut request = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhooks::SIGNATURE_HEADER, signature);
        if let Some(event) = message.event {
            request = request.header(EVENT_ID_HEADER, event.to_string());
        }
        let response =
            request
                .body(body)
                .send()
                .await
                .map_err(|e| match refused_by_resolver(&e) {
                    Some(why) => refusal(why),
                    None => failure(&e.without_url().to_string()),
                })?;
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

/// A target that was not tried: the log says so, and why.
fn refusal(why: Forbidden) -> SendFailure {
    SendFailure {
        status_code: None,
        reason: format!("refused, not sent: webhooks may not be sent to {why}"),
    }
}

/// What the resolver refused, if that is why `error` happened.
fn refused_by_resolver(error: &reqwest::Error) -> Option<Forbidden> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(refused) = current.downcast_ref::<RefusedTarget>() {
            return Some(refused.0);
        }
        cause = current.source();
    }
    None
}

/// The resolver's answer when every address of a name is one webhooks may not go to.
#[derive(Debug, Clone, Copy)]
pub struct RefusedTarget(pub Forbidden);

impl std::fmt::Display for RefusedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "webhooks may not be sent to {}", self.0)
    }
}

impl std::error::Error for RefusedTarget {}

/// Resolves a webhook host and keeps only the addresses webhooks may go to; with none left,
/// fails with [`RefusedTarget`]. The client connects only to what this returns.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnlyResolver;

impl PublicOnlyResolver {
    pub async fn lookup(
        host: &str,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(why) = webhook_target::classify_name(host) {
            return Err(Box::new(RefusedTarget(why)));
        }
        let mut refused = None;
        let public: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await?
            .filter(|address| match webhook_target::classify_ip(address.ip()) {
                Some(why) => {
                    refused = Some(why);
                    false
                }
                None => true,
            })
            .collect();
        match refused {
            Some(why) if public.is_empty() => Err(Box::new(RefusedTarget(why))),
            _ => Ok(public),
        }
    }
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = PublicOnlyResolver::lookup(&host).await?;
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_resolver_refuses_names_that_resolve_only_to_forbidden_addresses() {
        // `localhost` is refused by name; a name for 127.0.0.1 in /etc/hosts by its address.
        for host in ["localhost", "LOCALHOST", "api.localhost"] {
            let error = PublicOnlyResolver::lookup(host).await.unwrap_err();
            assert!(error.downcast_ref::<RefusedTarget>().is_some(), "{host}");
        }
        let ip_literal = PublicOnlyResolver::lookup("127.0.0.1").await.unwrap_err();
        assert!(ip_literal.downcast_ref::<RefusedTarget>().is_some());
        let mapped = PublicOnlyResolver::lookup("::ffff:169.254.169.254")
            .await
            .unwrap_err();
        assert!(mapped.downcast_ref::<RefusedTarget>().is_some());
    }
}
