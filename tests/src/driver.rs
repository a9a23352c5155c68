//! Drives real server processes over HTTP, for the benchmark and the reliability suites: start
//! (and kill -9, and restart) `holdfast` on a fresh SQLite file or PostgreSQL database, onboard
//! parties through the API, and run retail lifecycles, reading phone codes from the simulator.

use anyhow::{Context, anyhow, bail, ensure};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const OPERATOR_USERNAME: &str = "bench-operator";
pub const OPERATOR_PASSWORD: &str = "bench-operator-password";
pub const SECRET: &str = "benchmark-secret-benchmark-secret-0123456789";
/// Every cast supplier's second password (it confirms a payout destination).
pub const SUPPLIER_SECOND_PASSWORD: &str = "supplier-second-password-42";

/// Where the server keeps its data.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Store {
    pub fn url(&self) -> String {
        match self {
            Store::Sqlite(path) => format!("sqlite://{}?mode=rwc", path.display()),
            Store::Postgres(url) => url.clone(),
        }
    }
}

/// A fresh database: a SQLite file in `dir`, or a new database on the PostgreSQL server that
/// `admin_url` reaches.
pub async fn fresh_store(
    postgres_admin: Option<&str>,
    dir: &Path,
    name: &str,
) -> anyhow::Result<Store> {
    match postgres_admin {
        None => Ok(Store::Sqlite(dir.join(format!("{name}.db")))),
        Some(admin) => {
            use sea_orm::ConnectionTrait;
            let db = sea_orm::Database::connect(admin).await?;
            db.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await?;
            db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await?;
            db.close().await?;
            Ok(Store::Postgres(replace_database(admin, name)))
        }
    }
}

/// `url` with its database (the path) replaced by `name`; the user, host and query string
/// (`?sslmode=disable`) are kept.
pub fn replace_database(url: &str, name: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_path(&format!("/{name}"));
            parsed.to_string()
        }
        Err(_) => format!("{}/{name}", url.trim_end_matches('/')),
    }
}

/// The database a PostgreSQL URL names (its path without the slash), ignoring any query string.
pub fn database_name(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let name = parsed.path().trim_start_matches('/');
    (!name.is_empty()).then(|| name.to_owned())
}

/// The server binary, as an absolute path: `HOLDFAST_BIN`, or the release build, or the debug build.
pub fn server_binary() -> anyhow::Result<PathBuf> {
    // Absolute, because the server runs in a directory of its own (a relative path such as
    // `target/release/holdfast` would be looked up from there).
    if let Ok(path) = std::env::var("HOLDFAST_BIN") {
        return std::path::absolute(&path)
            .with_context(|| format!("HOLDFAST_BIN={path} is not a usable path"));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for profile in ["release", "debug"] {
        let candidate = root.join("target").join(profile).join("holdfast");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!("no holdfast binary: run `cargo build --release -p holdfast-server` or set HOLDFAST_BIN")
}

pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A running `holdfast` process.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    pub port: u16,
    pub store: Store,
    child: Child,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Server {
    /// Starts a server on `store` (creating the operator first) and waits until it answers.
    pub async fn start(
        store: Store,
        workdir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let binary = server_binary()?;
        let mut create = Command::new(&binary);
        create
            .args(["create-operator", "--username", OPERATOR_USERNAME])
            .current_dir(workdir)
            .env("DATABASE_URL", store.url())
            .env("HOLDFAST_JWT_SECRET", SECRET)
            .env("HOLDFAST_PHONE_GATEWAY", "simulator")
            .env("HOLDFAST_OPERATOR_PASSWORD", OPERATOR_PASSWORD)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // An operator that exists already (a restart on the same store) is fine.
        let _ = create.status()?;
        let port = free_port()?;
        let log = workdir.join(format!("server-{port}.log"));
        let child = spawn(&binary, &store, port, &env, workdir, &log)?;
        let server = Server {
            url: format!("http://127.0.0.1:{port}"),
            port,
            store,
            child,
            env,
            log,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// A second process on the same store, on another port.
    pub async fn another(&self, workdir: &Path) -> anyhow::Result<Server> {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Server::start(self.store.clone(), workdir, &env).await
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = Client::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(reply) = client.get(format!("{}/healthz", self.url)).send().await
                && reply.status() == StatusCode::OK
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the server did not start; its log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident memory (VmHWM), in kilobytes.
    pub fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kb| kb.parse().ok())
    }

    /// SIGKILL: no shutdown, no flushing — a crash.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts the process again on the same store and port.
    pub async fn restart(&mut self, workdir: &Path) -> anyhow::Result<()> {
        let binary = server_binary()?;
        self.child = spawn(
            &binary,
            &self.store,
            self.port,
            &self.env,
            workdir,
            &self.log,
        )?;
        self.wait_ready().await
    }

    /// SIGTERM, then waits up to `within` for the process to exit: its exit status and how
    /// long it took, or an error if it did not exit in time (it is killed then).
    pub async fn terminate(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        ensure!(sent.success(), "kill -TERM failed");
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill9()?;
        bail!("the server did not exit within {within:?} of SIGTERM")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    binary: &Path,
    store: &Store,
    port: u16,
    env: &[(String, String)],
    workdir: &Path,
    log: &Path,
) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = Command::new(binary);
    command
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .current_dir(workdir)
        .env("DATABASE_URL", store.url())
        .env("HOLDFAST_JWT_SECRET", SECRET)
        .env("HOLDFAST_PHONE_GATEWAY", "simulator")
        .env("RUST_LOG", "warn")
        // The log goes to standard output; panics and startup errors to standard error.
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().context("could not start holdfast")
}

/// An amount as the API writes it (`"-12.34"`, two decimals) in minor units (-1234).
pub fn minor_units(amount: &str) -> anyhow::Result<i64> {
    amount
        .replace('.', "")
        .parse()
        .with_context(|| format!("not an amount: {amount}"))
}

/// A response that began (its status arrived) but whose body did not arrive whole: the server
/// went away in the middle of answering.
#[derive(Debug)]
pub struct CutOff(pub reqwest::Error);

impl std::fmt::Display for CutOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the response was cut off: {}", self.0)
    }
}

impl std::error::Error for CutOff {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// A reply: status and JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub fn ok(self) -> anyhow::Result<Value> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(anyhow!("{}: {}", self.status, self.body))
        }
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// A thin HTTP client for the API; optionally records how long every call took.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub http: Client,
    pub latencies: Option<std::sync::Arc<std::sync::Mutex<Vec<Duration>>>>,
    /// The operator token that reads the simulator's inbox, logged in at first use.
    inbox_reader: std::sync::Arc<tokio::sync::OnceCell<String>>,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let http = Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Api {
            base: base.to_owned(),
            http,
            latencies: None,
            inbox_reader: Default::default(),
        }
    }

    /// The same client, recording the latency of every call.
    pub fn recording(mut self) -> Api {
        self.latencies = Some(Default::default());
        self
    }

    /// The same client (and the same latency record) for another server on the same store.
    pub fn on(&self, base: &str) -> Api {
        Api {
            base: base.to_owned(),
            ..self.clone()
        }
    }

    /// The latencies recorded so far, emptying the record.
    pub fn take_latencies(&self) -> Vec<Duration> {
        self.latencies
            .as_ref()
            .and_then(|l| l.lock().ok().map(|mut l| std::mem::take(&mut *l)))
            .unwrap_or_default()
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(CutOff)?;
        if let Some(latencies) = &self.latencies
            && let Ok(mut latencies) = latencies.lock()
        {
            latencies.push(started.elapsed());
        }
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok(Reply { status, body })
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<Reply> {
        self.call(reqwest::Method::GET, path, token, None, None)
            .await
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<Reply> {
        self.call(reqwest::Method::POST, path, token, Some(body), None)
            .await
    }

    pub async fn post_keyed(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
        key: &str,
    ) -> anyhow::Result<Reply> {
        self.call(reqwest::Method::POST, path, token, Some(body), Some(key))
            .await
    }

    /// The balance of the caller's account of `kind` (`prepaid`, `withdrawal`…), in minor units.
    pub async fn balance(&self, token: &str, kind: &str) -> anyhow::Result<i64> {
        let accounts = self.get("/v1/accounts", Some(token)).await?.ok()?;
        let balance = accounts
            .as_array()
            .and_then(|a| a.iter().find(|x| x["kind"] == kind))
            .and_then(|x| x["balance"].as_str())
            .ok_or_else(|| anyhow!("no {kind} account: {accounts}"))?;
        minor_units(balance)
    }

    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let reply = self
            .post(
                "/v1/auth/login",
                None,
                &json!({"username": username, "password": password}),
            )
            .await?
            .ok()?;
        reply["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("no token")
    }

    /// The code the simulated phone got for `challenge`, waiting for the outbox to deliver it.
    /// The code the phone got for `challenge`, waiting for the message to arrive (the simulator
    /// answers the moment it is delivered).
    pub async fn code_for(&self, phone: &str, challenge: &str) -> anyhow::Result<String> {
        let started = Instant::now();
        // The inbox opens to an operator (or the key the server prints at start).
        let reader = self
            .inbox_reader
            .get_or_try_init(|| self.login(OPERATOR_USERNAME, OPERATOR_PASSWORD))
            .await?;
        loop {
            let inbox = self
                .get(
                    &format!("/v1/phone-simulator/{phone}/messages?challenge_id={challenge}&wait_ms=10000"),
                    Some(reader),
                )
                .await?
                .ok()?;
            if let Some(code) = inbox
                .as_array()
                .and_then(|messages| messages.first())
                .and_then(|m| m["code"].as_str())
            {
                return Ok(code.to_owned());
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("no code for {challenge} after 30 s");
            }
        }
    }

    pub async fn answer(
        &self,
        challenge: &str,
        code: &str,
        decision: &str,
    ) -> anyhow::Result<Reply> {
        self.post(
            &format!("/v1/challenges/{challenge}/answer"),
            None,
            &json!({"code": code, "decision": decision}),
        )
        .await
    }
}

/// A shopper: its card, phone and session, and the seller it buys from.
#[derive(Debug, Clone)]
pub struct Shopper {
    pub card: String,
    pub phone: String,
    pub token: String,
    pub seller: usize,
}

/// A supplier with one commodity.
#[derive(Debug, Clone)]
pub struct Seller {
    pub id: String,
    pub token: String,
    pub commodity: String,
}

/// Everyone a retail lifecycle needs.
#[derive(Debug, Clone)]
pub struct Cast {
    pub operator: String,
    pub sellers: Vec<Seller>,
    pub carrier: String,
    pub price_minor: i64,
    pub commission_minor: i64,
    pub shoppers: Vec<Shopper>,
}

/// A valid, distinct Korean mobile number for shopper `index`.
pub fn phone_of(run: u32, index: usize) -> String {
    format!("+82109{:03}{:04}", run % 1000, index % 10_000)
}

/// Onboards an operator session, a carrier, `sellers` suppliers (5 % commission, the carrier
/// by default, [`SUPPLIER_SECOND_PASSWORD`]) with one 10.00 USD commodity each, and `shoppers` shoppers, each with a prepaid
/// card holding `deposit`, logged in on its phone and buying from seller `index % sellers`.
pub async fn cast(
    api: &Api,
    run: u32,
    sellers: usize,
    shoppers: usize,
    deposit: &str,
) -> anyhow::Result<Cast> {
    let operator = api.login(OPERATOR_USERNAME, OPERATOR_PASSWORD).await?;
    let tag = rand::random::<u32>();
    let carrier_name = format!("carrier-{run}-{tag}");
    let carrier = api
        .post("/v1/operator/distributors", Some(&operator),
            &json!({"display_name": "Carrier", "username": carrier_name, "password": "carrier-password"}))
        .await?
        .ok()?;
    let carrier_token = api.login(&carrier_name, "carrier-password").await?;
    let mut seller_list = Vec::with_capacity(sellers);
    for index in 0..sellers.max(1) {
        let supplier_name = format!("supplier-{run}-{tag}-{index}");
        let supplier = api
            .post("/v1/operator/suppliers", Some(&operator),
                &json!({"display_name": format!("Bench Supplies {index}"), "username": supplier_name,
                        "password": "supplier-password", "second_password": SUPPLIER_SECOND_PASSWORD,
                        "commission_rate": "0.05",
                        "default_distributor_id": carrier["party_id"]}))
            .await?
            .ok()?;
        let id = supplier["party_id"]
            .as_str()
            .context("supplier id")?
            .to_owned();
        let token = api.login(&supplier_name, "supplier-password").await?;
        let commodity = api
            .post(
                "/v1/retail/commodities",
                Some(&token),
                &json!({"name": "Bench kettle", "price": {"amount": "10.00", "currency": "USD"}}),
            )
            .await?
            .ok()?;
        let commodity = commodity["id"].as_str().context("commodity id")?.to_owned();
        seller_list.push(Seller {
            id,
            token,
            commodity,
        });
    }
    let mut list = Vec::with_capacity(shoppers);
    for index in 0..shoppers {
        let phone = phone_of(run, index);
        let created = api
            .post_keyed(
                "/v1/operator/shoppers",
                Some(&operator),
                &json!({"display_name": "Shopper", "phone": phone, "currency": "USD",
                        "initial_deposit": {"amount": deposit, "currency": "USD"},
                        "delivery_address": "1 Bench Street"}),
                &format!("shopper-{run}-{index}"),
            )
            .await?
            .ok()?;
        let card = created["card"]["card_number"]
            .as_str()
            .context("card")?
            .to_owned();
        let started = api
            .post("/v1/auth/card-login", None, &json!({"card_number": card}))
            .await?
            .ok()?;
        let challenge = started["challenge_id"]
            .as_str()
            .context("challenge")?
            .to_owned();
        let code = api.code_for(&phone, &challenge).await?;
        let answered = api.answer(&challenge, &code, "approve").await?.ok()?;
        let token = answered["token"]["access_token"]
            .as_str()
            .context("token")?
            .to_owned();
        list.push(Shopper {
            card,
            phone,
            token,
            seller: index % seller_list.len(),
        });
    }
    Ok(Cast {
        operator,
        sellers: seller_list,
        carrier: carrier_token,
        price_minor: 1000,
        commission_minor: 50,
        shoppers: list,
    })
}

/// The steps of one retail lifecycle, in order, as the benchmark times them.
pub const STEPS: [&str; 7] = [
    "place_order",
    "read_code",
    "approve_order",
    "record_delivery",
    "request_settlement",
    "read_settlement_code",
    "approve_settlement",
];

/// Runs one whole lifecycle for `shopper`: order → approve on the phone → delivered with the
/// order number → settlement request → approve → released. Returns each step's duration.
pub async fn lifecycle(
    api: &Api,
    cast: &Cast,
    shopper: &Shopper,
    key: &str,
) -> anyhow::Result<[Duration; 7]> {
    let seller = &cast.sellers[shopper.seller];
    let mut times = [Duration::ZERO; 7];
    let mut clock = Instant::now();
    let mut lap = |step: usize, times: &mut [Duration; 7]| {
        times[step] = clock.elapsed();
        clock = Instant::now();
    };
    let order = api
        .post_keyed(
            "/v1/retail/orders",
            Some(&shopper.token),
            &json!({"lines": [{"commodity_id": seller.commodity, "quantity": 1}]}),
            key,
        )
        .await?
        .ok()?;
    lap(0, &mut times);
    let number = order["order_number"]
        .as_str()
        .context("order number")?
        .to_owned();
    let challenge = order["pending_confirmation"]["challenge_id"]
        .as_str()
        .context("challenge")?
        .to_owned();
    let code = api.code_for(&shopper.phone, &challenge).await?;
    lap(1, &mut times);
    api.answer(&challenge, &code, "approve").await?.ok()?;
    lap(2, &mut times);
    let parcel = find_parcel(api, &cast.carrier, &number).await?;
    api.post(
        &format!("/v1/distributor/parcels/{parcel}/tracking"),
        Some(&cast.carrier),
        &json!({"kind": "delivered", "location": "door", "order_number": number}),
    )
    .await?
    .ok()?;
    lap(3, &mut times);
    api.post(
        &format!("/v1/retail/orders/{number}/settlement-request"),
        Some(&seller.token),
        &json!({}),
    )
    .await?
    .ok()?;
    lap(4, &mut times);
    let view = api
        .get(&format!("/v1/retail/orders/{number}"), Some(&shopper.token))
        .await?
        .ok()?;
    let settlement = view["pending_confirmation"]["challenge_id"]
        .as_str()
        .context("settlement challenge")?
        .to_owned();
    let code = api.code_for(&shopper.phone, &settlement).await?;
    lap(5, &mut times);
    let settled = api.answer(&settlement, &code, "approve").await?.ok()?;
    if settled["state"] != "settled" {
        bail!("not settled: {settled}");
    }
    lap(6, &mut times);
    Ok(times)
}

async fn find_parcel(api: &Api, carrier: &str, number: &str) -> anyhow::Result<String> {
    let parcels = api
        .get(
            &format!("/v1/distributor/parcels?order_number={number}"),
            Some(carrier),
        )
        .await?
        .ok()?;
    parcels
        .as_array()
        .and_then(|list| list.iter().find(|p| p["order_number"] == number))
        .and_then(|p| p["parcel_id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no parcel for {number}"))
}
