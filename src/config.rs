//! One `Settings` for both binaries: read from the environment (and `.env` when
//! present), validated once at start-up with an error that names the variable.
//! Secrets are wrapped in `Secret`, whose `Debug` never shows them.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::domain::Pricing;

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Which implementation talks to an external party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integration {
    /// Deterministic, in-process; for development and tests.
    Simulated,
    /// A real HTTP API at this base URL.
    Http { base_url: String },
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Secret,
    pub db_max_connections: u32,
    pub temporal_address: String,
    pub temporal_namespace: String,
    pub task_queue: String,
    /// TLS to the Temporal frontend (self-hosted with TLS/mTLS, or Temporal Cloud).
    pub temporal_tls: Option<TemporalTls>,
    /// Temporal Cloud API key (sent as a bearer token; implies TLS).
    pub temporal_api_key: Option<Secret>,
    pub http_addr: SocketAddr,
    /// The API's Prometheus `/metrics`, on a listener of its own: order counts
    /// are not for whoever can reach the API port.
    pub metrics_addr: SocketAddr,
    /// Request bodies above this are refused with 413.
    pub max_body_bytes: usize,
    /// A request still running after this is answered 503.
    pub request_timeout: Duration,
    /// A connection whose request headers take longer than this is closed.
    pub header_read_timeout: Duration,
    /// A request body that takes longer than this to arrive is refused with 408.
    pub body_read_timeout: Duration,
    /// Requests beyond this many in flight are shed with 503 and `Retry-After`, not queued.
    pub max_concurrent_requests: usize,
    /// Origins allowed by CORS; none by default.
    pub cors_origins: Vec<String>,
    /// Per caller (token subject, or IP for public routes): sustained rate and burst.
    pub rate_limit_per_second: std::num::NonZeroU32,
    pub rate_limit_burst: std::num::NonZeroU32,
    /// `POST /users` (public, and each one sends an email): sign-ups per minute
    /// from one address, and from all addresses together.
    pub signup_per_ip_per_minute: std::num::NonZeroU32,
    pub signup_per_minute: std::num::NonZeroU32,
    /// Proxies (CIDRs) whose `Forwarded` / `X-Forwarded-For` name the client:
    /// behind a load balancer, public routes are limited per client, not per balancer.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How tokens are verified: the API's (`None` for the worker, which reads no token).
    pub jwt: Option<JwtSettings>,
    pub pricing: Pricing,
    pub payment_gateway: Integration,
    pub carrier: Integration,
    pub http_client_timeout: Duration,
    /// Orders whose total is at least this wait for an admin's review before the charge.
    pub review_threshold: Decimal,
    pub review_deadline: Duration,
    /// An order not delivered this long after shipping ends `delivery_overdue`.
    pub delivery_deadline: Duration,
    /// A new account not verified within this is `expired`.
    pub verification_deadline: Duration,
    /// HMAC key of the stored verification-code hashes: without it, a copy of
    /// the database does not give the six-digit codes away.
    pub verification_key: Secret,
    /// Simulated carrier only: report pickup and delivery by itself.
    pub simulated_carrier_events: Option<SimulatedCarrierReports>,
    /// Storefront webhooks (the worker's); unset means notifications are only logged.
    pub webhook: Option<WebhookSettings>,
    /// The mail server (the worker's); unset means emails are only logged.
    pub smtp: Option<SmtpSettings>,
    pub worker: WorkerSettings,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    /// After SIGTERM the API answers `/readyz` with 503 this long before it stops
    /// accepting, so a load balancer takes it out of rotation first.
    pub shutdown_delay: Duration,
    /// Orders accepted while Temporal was unreachable are started (and decisions
    /// it missed are signalled) by a loop this often.
    pub start_recovery_interval: Duration,
    /// How long a caller's decision (cancel, review, amendment, carrier report)
    /// waits for the order's row lock, which a payment or booking call holds for
    /// as long as the call takes; then 409 with `Retry-After`.
    pub action_lock_wait: Duration,
    /// How long `POST /orders/{id}/cancel` waits for compensation to finish before
    /// it answers 202 (accepted, still compensating) instead of 200 with the end.
    pub cancel_wait: Duration,
    /// An event stream re-reads its order this often even without a NOTIFY (a
    /// missed one, or a lost listener connection, costs at most this).
    pub events_fallback_poll: Duration,
    /// The Temporal Web UI's base URL (`ORDERS_TEMPORAL_UI_URL`): `GET
    /// /orders/{id}/workflow` links the order's workflow there.
    pub temporal_ui_url: Option<String>,
}

/// The mail server and the sender of every email.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `smtp://` or `smtps://`; it may carry credentials.
    pub url: Secret,
    pub from: String,
}

/// The simulated carrier's own reports: pickup this long after booking, delivery this long after pickup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedCarrierReports {
    pub in_transit_after: Duration,
    pub delivered_after: Duration,
}

/// Where storefront webhooks go and the keys they are signed with (Standard Webhooks).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: String,
    /// One key normally; during a rotation the old and the new (each delivery is
    /// signed with every one, so receivers holding either accept it).
    pub keys: Vec<SigningKey>,
}

/// A webhook signing key: the bytes under a `whsec_<base64>` secret (or, for a
/// secret without that prefix, its own bytes). Never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// Parses `ORDERS_WEBHOOK_SECRET`: secrets separated by spaces or commas.
    pub fn parse_all(value: &str) -> Result<Vec<SigningKey>, String> {
        use base64::Engine;
        let keys: Vec<SigningKey> = value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|secret| match secret.strip_prefix("whsec_") {
                Some(b64) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("a whsec_ secret must be base64 after the prefix: {e}"))
                    .and_then(|k| {
                        if k.len() >= 24 { Ok(SigningKey(k)) } else { Err("a key must be at least 24 bytes".into()) }
                    }),
                None if secret.len() >= 32 => Ok(SigningKey(secret.as_bytes().to_vec())),
                None => Err("must be whsec_<base64> (or at least 32 bytes)".into()),
            })
            .collect::<Result<_, String>>()?;
        if keys.is_empty() {
            return Err("is empty".into());
        }
        Ok(keys)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// TLS to Temporal, with the variable names of Temporal's own environment configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemporalTls {
    /// PEM CA of the server's certificate; the system roots when unset.
    pub server_ca_cert_path: Option<String>,
    /// mTLS: PEM client certificate and key (both or neither).
    pub client_cert_path: Option<String>,
    pub client_key_path: Option<String>,
    /// The name to verify the server certificate against; the address's host when unset.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    pub max_concurrent_activities: usize,
    pub max_concurrent_local_activities: usize,
    pub max_concurrent_workflow_tasks: usize,
    pub max_cached_workflows: usize,
    /// Concurrent long polls per task type (workflow tasks, activity tasks).
    pub max_pollers: usize,
    /// Activity tasks one SDK worker runs before it is replaced by a fresh one
    /// (`worker::run_until_stopped`); `None` never replaces it.
    pub recycle_after_activities: Option<std::num::NonZeroU64>,
    /// Liveness and readiness (`/healthz`, `/readyz`).
    pub health_addr: SocketAddr,
    /// Prometheus `/metrics`: the Temporal SDK's worker metrics and ours.
    pub metrics_addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    Hs256,
    Rs256,
    Es256,
}

/// How bearer tokens are verified (and, for `orders-api token`, signed).
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub algorithm: JwtAlgorithm,
    /// HS256: the shared secret.
    pub secret: Option<Secret>,
    /// RS256/ES256: a PEM public key (ORDERS_JWT_PUBLIC_KEY_FILE) ...
    pub public_key_pem: Option<String>,
    /// ... or a JWKS document (ORDERS_JWT_JWKS_FILE): keys chosen by `kid`, so they can rotate.
    pub jwks: Option<String>,
    /// ... or an IdP's JWKS endpoint, fetched and kept fresh (see `JwksUrl`).
    pub jwks_url: Option<JwksUrl>,
    /// RS256/ES256: the PEM private key, only for `orders-api token`.
    pub private_key_pem: Option<Secret>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u64,
    /// Tokens whose `exp` is further ahead than this are refused (a stolen
    /// long-lived token is worth less): `ORDERS_JWT_MAX_LIFETIME`.
    pub max_lifetime: std::time::Duration,
    /// Where IdPs put what we read: the claim naming the caller (`sub`) and the
    /// one holding the role(s), as a dotted path (`realm_access.roles`) or a
    /// claim name of its own (`cognito:groups`, `https://shop.example/roles`).
    pub claims: ClaimSettings,
}

/// An identity provider's JWKS endpoint (`ORDERS_JWT_JWKS_URL`, https): fetched
/// on first use, again every `refresh_every`, and when a token names a key id
/// not seen yet (at most once per `min_refresh`), so the IdP can rotate its
/// keys without a restart here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksUrl {
    /// The JWKS endpoint, or, with `discover`, the issuer's OpenID configuration
    /// (`{ORDERS_JWT_ISSUER}/.well-known/openid-configuration`) that names it.
    pub url: String,
    pub discover: bool,
    /// A PEM CA to trust besides the built-in roots (`ORDERS_JWT_JWKS_CA_FILE`).
    pub ca_pem: Option<String>,
    pub refresh_every: Duration,
    pub min_refresh: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSettings {
    pub subject: String,
    pub role: String,
    /// IdP role name → ours (`customer`, `admin`, `carrier`); empty: names are ours already.
    pub role_map: Vec<(String, String)>,
}

impl Default for ClaimSettings {
    fn default() -> Self {
        Self { subject: "sub".into(), role: "role".into(), role_map: Vec::new() }
    }
}

impl JwtSettings {
    /// Only the JWT variables, for `orders-api token` (which needs no database).
    pub fn from_env() -> Result<JwtSettings, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::read(&Env(&|k| std::env::var(k).ok()))
    }

    fn read(env: &Env<'_>) -> Result<JwtSettings, ConfigError> {
        let algorithm = match env.get("ORDERS_JWT_ALG").as_deref().unwrap_or("HS256") {
            "HS256" => JwtAlgorithm::Hs256,
            "RS256" => JwtAlgorithm::Rs256,
            "ES256" => JwtAlgorithm::Es256,
            other => {
                return Err(ConfigError {
                    var: "ORDERS_JWT_ALG",
                    message: format!("must be HS256, RS256 or ES256, got {other:?}"),
                });
            }
        };
        let file = |var: &'static str| -> Result<Option<String>, ConfigError> {
            env.get(var)
                .map(|path| {
                    std::fs::read_to_string(&path).map_err(|e| ConfigError { var, message: format!("{path}: {e}") })
                })
                .transpose()
        };
        let mut jwt = JwtSettings {
            algorithm,
            secret: None,
            public_key_pem: None,
            jwks: None,
            jwks_url: None,
            private_key_pem: file("ORDERS_JWT_PRIVATE_KEY_FILE")?.map(Secret::new),
            issuer: env.get("ORDERS_JWT_ISSUER"),
            audience: env.get("ORDERS_JWT_AUDIENCE"),
            leeway_secs: env.parse("ORDERS_JWT_LEEWAY_SECS", 30, "a number of seconds")?,
            max_lifetime: env.duration("ORDERS_JWT_MAX_LIFETIME", Duration::from_secs(24 * 3600))?,
            claims: ClaimSettings {
                subject: env.get("ORDERS_JWT_SUBJECT_CLAIM").unwrap_or_else(|| "sub".into()),
                role: env.get("ORDERS_JWT_ROLE_CLAIM").unwrap_or_else(|| "role".into()),
                role_map: match env.get("ORDERS_JWT_ROLE_MAP") {
                    None => Vec::new(),
                    Some(map) => map
                        .split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(|pair| match pair.split_once('=') {
                            Some((theirs, ours)) if matches!(ours.trim(), "customer" | "admin" | "carrier") => {
                                Ok((theirs.trim().to_owned(), ours.trim().to_owned()))
                            }
                            _ => Err(ConfigError {
                                var: "ORDERS_JWT_ROLE_MAP",
                                message: format!("{pair:?} must be <IdP role>=customer|admin|carrier"),
                            }),
                        })
                        .collect::<Result<_, _>>()?,
                },
            },
        };
        if algorithm == JwtAlgorithm::Hs256 {
            let secret = env.required("ORDERS_JWT_SECRET")?;
            if secret.len() < 32 {
                return Err(ConfigError {
                    var: "ORDERS_JWT_SECRET",
                    message: "must be at least 32 bytes (HS256 needs a 256-bit key)".into(),
                });
            }
            jwt.secret = Some(Secret::new(secret));
        } else {
            jwt.public_key_pem = file("ORDERS_JWT_PUBLIC_KEY_FILE")?;
            jwt.jwks = file("ORDERS_JWT_JWKS_FILE")?;
            jwt.jwks_url = match env.get("ORDERS_JWT_JWKS_URL") {
                None => None,
                Some(url) => Some(JwksUrl {
                    discover: url == "discover",
                    url: if url != "discover" {
                        http_url("ORDERS_JWT_JWKS_URL", &url, true)?.to_string()
                    } else {
                        let issuer = jwt.issuer.clone().filter(|i| i.starts_with("https://")).ok_or(ConfigError {
                            var: "ORDERS_JWT_ISSUER",
                            message: "ORDERS_JWT_JWKS_URL=discover needs the issuer's https:// URL".into(),
                        })?;
                        format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
                    },
                    ca_pem: file("ORDERS_JWT_JWKS_CA_FILE")?,
                    refresh_every: env.duration("ORDERS_JWT_JWKS_REFRESH", Duration::from_secs(300))?,
                    min_refresh: env.duration("ORDERS_JWT_JWKS_MIN_REFRESH", Duration::from_secs(10))?,
                }),
            };
            if jwt.public_key_pem.is_none() && jwt.jwks.is_none() && jwt.jwks_url.is_none() {
                return Err(ConfigError {
                    var: "ORDERS_JWT_PUBLIC_KEY_FILE",
                    message: "RS256/ES256 need a public key file (or ORDERS_JWT_JWKS_FILE, or ORDERS_JWT_JWKS_URL)"
                        .into(),
                });
            }
        }
        Ok(jwt)
    }
}

/// The variables table of `docs/configuration.md`, the one place every setting
/// is described: `--help` of both binaries prints it, and a unit test checks
/// that every variable read here is in it.
const CONFIGURATION_DOC: &str = include_str!("../docs/configuration.md");

/// The variables (name, default, meaning) as `docs/configuration.md` lists them.
pub fn documented_variables() -> Vec<(Vec<String>, String, String)> {
    CONFIGURATION_DOC
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            let (names, default, meaning) = (cells.first()?, cells.get(1)?, cells.get(2..)?.join(" | "));
            let names = names.split('`').skip(1).step_by(2).map(str::to_owned).collect();
            Some((names, default.replace('`', ""), meaning.replace('`', "")))
        })
        .collect()
}

/// `--help`'s list of environment variables, from `docs/configuration.md`.
pub fn variables_help() -> String {
    let mut out = String::from("Environment variables (a .env file is read too; see docs/configuration.md):\n");
    for (names, default, meaning) in documented_variables() {
        out.push_str(&format!("\n  {}  [default: {default}]\n      {meaning}\n", names.join(", ")));
    }
    out
}

/// Where settings come from; a closure in tests, the process environment otherwise.
type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

struct Env<'a>(&'a Lookup<'a>);

impl Env<'_> {
    fn get(&self, var: &'static str) -> Option<String> {
        (self.0)(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var).ok_or(ConfigError { var, message: "is required".into() })
    }

    fn parse<T: FromStr>(&self, var: &'static str, default: T, what: &str) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| ConfigError { var, message: format!("must be {what}, got {v:?}") }),
        }
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => humantime::parse_duration(&v)
                .map_err(|_| ConfigError { var, message: format!("must be a duration like 30s or 5m, got {v:?}") }),
        }
    }

    fn count(&self, var: &'static str, default: usize) -> Result<usize, ConfigError> {
        let n: usize = self.parse(var, default, "a positive integer")?;
        if n == 0 {
            return Err(ConfigError { var, message: "must be at least 1".into() });
        }
        Ok(n)
    }

    fn money(&self, var: &'static str, default: Decimal) -> Result<Decimal, ConfigError> {
        let v: Decimal = self.parse(var, default, "a decimal number")?;
        if v.is_sign_negative() {
            return Err(ConfigError { var, message: "must not be negative".into() });
        }
        Ok(v)
    }

    fn integration(&self, var: &'static str, url_var: &'static str) -> Result<Integration, ConfigError> {
        match self.get(var).as_deref().unwrap_or("simulated") {
            "simulated" => Ok(Integration::Simulated),
            "http" => {
                let base_url = http_url(url_var, &self.required(url_var)?, false)?;
                Ok(Integration::Http { base_url: base_url.as_str().trim_end_matches('/').to_owned() })
            }
            other => Err(ConfigError { var, message: format!("must be simulated or http, got {other:?}") }),
        }
    }
}

/// Which process the settings are for: each requires only what it uses (the
/// worker no JWT key; only the worker's pool must fit its activities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Api,
    Worker,
    /// Both in one process (the benchmark's tools, the tests).
    All,
}

impl Process {
    fn api(self) -> bool {
        matches!(self, Self::Api | Self::All)
    }

    fn worker(self) -> bool {
        matches!(self, Self::Worker | Self::All)
    }
}

impl Settings {
    /// Reads the process environment, after loading `.env` if there is one.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Self::from_env_for(Process::All)
    }

    /// Reads the process environment for one process (see `Process`).
    pub fn from_env_for(process: Process) -> Result<Settings, ConfigError> {
        // A missing .env is normal; a malformed one is reported.
        if let Err(e) = dotenvy::dotenv()
            && !e.not_found()
        {
            return Err(ConfigError { var: ".env", message: e.to_string() });
        }
        Self::from_lookup_for(process, &|k| std::env::var(k).ok())
    }

    /// Only what `orders-api migrate` needs, so a migration job carries no other secret.
    pub fn for_migrations() -> Result<(Secret, LogFormat), ConfigError> {
        let _ = dotenvy::dotenv();
        let env = Env(&|k| std::env::var(k).ok());
        Ok((database_url(&env)?, log_format(&env)?))
    }

    pub fn from_lookup(lookup: &Lookup<'_>) -> Result<Settings, ConfigError> {
        Self::from_lookup_for(Process::All, lookup)
    }

    pub fn from_lookup_for(process: Process, lookup: &Lookup<'_>) -> Result<Settings, ConfigError> {
        let env = Env(lookup);
        let jwt = if process.api() { Some(JwtSettings::read(&env)?) } else { None };
        let database_url = database_url(&env)?;
        let tax_rate = env.money("ORDERS_TAX_RATE", Decimal::new(85, 3))?;
        if tax_rate >= Decimal::ONE {
            return Err(ConfigError {
                var: "ORDERS_TAX_RATE",
                message: "must be a fraction below 1, e.g. 0.085".into(),
            });
        }
        let defaults = Pricing::default();
        let pricing = Pricing {
            tax_rate,
            shipping_fee: env.money("ORDERS_SHIPPING_FEE", defaults.shipping_fee)?,
            free_shipping_threshold: env.money("ORDERS_FREE_SHIPPING_THRESHOLD", defaults.free_shipping_threshold)?,
        };
        let temporal_api_key = env.get("TEMPORAL_API_KEY").map(Secret::new);
        let tls_files = TemporalTls {
            server_ca_cert_path: env.get("TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
            client_cert_path: env.get("TEMPORAL_TLS_CLIENT_CERT_PATH"),
            client_key_path: env.get("TEMPORAL_TLS_CLIENT_KEY_PATH"),
            server_name: env.get("TEMPORAL_TLS_SERVER_NAME"),
        };
        if tls_files.client_cert_path.is_some() != tls_files.client_key_path.is_some() {
            return Err(ConfigError {
                var: "TEMPORAL_TLS_CLIENT_CERT_PATH",
                message: "mTLS needs both TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH".into(),
            });
        }
        // On when asked, when any TLS setting or an API key is given (Temporal Cloud), or for https:// addresses.
        let implied = tls_files != TemporalTls::default()
            || temporal_api_key.is_some()
            || env.get("TEMPORAL_ADDRESS").is_some_and(|a| a.starts_with("https://"));
        let temporal_tls = match env.get("TEMPORAL_TLS").as_deref() {
            Some("true" | "1") => Some(tls_files),
            Some("false" | "0") if temporal_api_key.is_none() => None,
            Some("false" | "0") => {
                return Err(ConfigError { var: "TEMPORAL_TLS", message: "an API key is only sent over TLS".into() });
            }
            Some(_) => return Err(ConfigError { var: "TEMPORAL_TLS", message: "must be true or false".into() }),
            None => implied.then_some(tls_files),
        };
        let db_max_connections: u32 = env.parse("ORDERS_DB_MAX_CONNECTIONS", 20, "a positive integer")?;
        let worker = WorkerSettings {
            max_concurrent_activities: env.count("ORDERS_WORKER_MAX_ACTIVITIES", 10)?,
            max_concurrent_local_activities: env.count("ORDERS_WORKER_MAX_LOCAL_ACTIVITIES", 10)?,
            max_concurrent_workflow_tasks: env.count("ORDERS_WORKER_MAX_WORKFLOW_TASKS", 50)?,
            max_cached_workflows: env.count("ORDERS_WORKER_MAX_CACHED_WORKFLOWS", 250)?,
            max_pollers: env.count("ORDERS_WORKER_MAX_POLLERS", 5)?,
            recycle_after_activities: std::num::NonZeroU64::new(env.parse(
                "ORDERS_WORKER_RECYCLE_AFTER_ACTIVITIES",
                20_000,
                "a whole number (0: never)",
            )?),
            health_addr: env.parse(
                "ORDERS_WORKER_HEALTH_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 8081)),
                "a socket address like 0.0.0.0:8081",
            )?,
            metrics_addr: env.parse(
                "ORDERS_WORKER_METRICS_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 9464)),
                "a socket address like 0.0.0.0:9464",
            )?,
        };
        // Every activity may hold a connection; more slots than connections would only queue on the pool.
        let db_activities = worker.max_concurrent_activities + worker.max_concurrent_local_activities;
        if process.worker() && (db_max_connections as usize) < db_activities {
            return Err(ConfigError {
                var: "ORDERS_DB_MAX_CONNECTIONS",
                message: format!(
                    "is {db_max_connections}, below ORDERS_WORKER_MAX_ACTIVITIES + ORDERS_WORKER_MAX_LOCAL_ACTIVITIES = {db_activities}"
                ),
            });
        }
        let log_format = log_format(&env)?;
        // Webhooks and email go out from the worker's activities only.
        let webhook = match env.get("ORDERS_WEBHOOK_URL").filter(|_| process.worker()) {
            None => None,
            Some(url) => {
                let url = http_url("ORDERS_WEBHOOK_URL", &url, false)?.to_string();
                let secret = env.required("ORDERS_WEBHOOK_SECRET")?;
                let keys = SigningKey::parse_all(&secret)
                    .map_err(|message| ConfigError { var: "ORDERS_WEBHOOK_SECRET", message })?;
                Some(WebhookSettings { url, keys })
            }
        };
        let smtp = env.get("ORDERS_SMTP_URL").filter(|_| process.worker()).map(|url| SmtpSettings {
            url: Secret::new(url),
            from: env.get("ORDERS_EMAIL_FROM").unwrap_or_else(|| "orders <orders@localhost>".into()),
        });
        if let Some(SmtpSettings { url, .. }) = &smtp
            && !(url.expose().starts_with("smtp://") || url.expose().starts_with("smtps://"))
        {
            return Err(ConfigError { var: "ORDERS_SMTP_URL", message: "must be an smtp:// or smtps:// URL".into() });
        }
        let cors_origins: Vec<String> = env
            .get("ORDERS_CORS_ORIGINS")
            .map(|v| {
                v.split(',').map(|o| o.trim().trim_end_matches('/').to_owned()).filter(|o| !o.is_empty()).collect()
            })
            .unwrap_or_default();
        if let Some(bad) = cors_origins.iter().find(|o| !(o.starts_with("http://") || o.starts_with("https://"))) {
            return Err(ConfigError {
                var: "ORDERS_CORS_ORIGINS",
                message: format!("{bad:?} is not an origin like https://shop.example.com"),
            });
        }
        let request_timeout = env.duration("ORDERS_REQUEST_TIMEOUT", Duration::from_secs(30))?;
        let header_read_timeout = env.duration("ORDERS_HEADER_READ_TIMEOUT", Duration::from_secs(10))?;
        let body_read_timeout = env.duration("ORDERS_BODY_READ_TIMEOUT", Duration::from_secs(15))?;
        if body_read_timeout >= request_timeout {
            return Err(ConfigError {
                var: "ORDERS_BODY_READ_TIMEOUT",
                message: "must be below ORDERS_REQUEST_TIMEOUT, so a slow body is refused before the request times out"
                    .into(),
            });
        }
        let action_lock_wait = env.duration("ORDERS_ACTION_LOCK_WAIT", Duration::from_secs(5))?;
        let cancel_wait = env.duration("ORDERS_CANCEL_WAIT", Duration::from_secs(10))?;
        let trusted_proxies = env
            .get("ORDERS_TRUSTED_PROXIES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| {
                // A bare address is a network of one.
                c.parse::<ipnet::IpNet>().or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)).map_err(
                    |_| ConfigError {
                        var: "ORDERS_TRUSTED_PROXIES",
                        message: format!("{c:?} is not an address or CIDR like 10.0.0.0/8"),
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let verification_key = env.required("ORDERS_VERIFICATION_KEY")?;
        if verification_key.len() < 32 {
            return Err(ConfigError { var: "ORDERS_VERIFICATION_KEY", message: "must be at least 32 bytes".into() });
        }
        let verification_key = Secret::new(verification_key);
        let events_fallback_poll = env.duration("ORDERS_EVENTS_FALLBACK_POLL", Duration::from_secs(5))?;
        if events_fallback_poll < Duration::from_millis(100) {
            return Err(ConfigError {
                var: "ORDERS_EVENTS_FALLBACK_POLL",
                message: "must be at least 100ms (every open stream re-reads its order this often)".into(),
            });
        }
        // A cancel waits for the lock, then for the end: both within the request's time.
        if action_lock_wait + cancel_wait >= request_timeout {
            return Err(ConfigError {
                var: "ORDERS_CANCEL_WAIT",
                message: format!(
                    "ORDERS_ACTION_LOCK_WAIT + ORDERS_CANCEL_WAIT must stay below ORDERS_REQUEST_TIMEOUT ({})",
                    humantime::format_duration(request_timeout)
                ),
            });
        }
        Ok(Settings {
            action_lock_wait,
            cancel_wait,
            max_body_bytes: env.count("ORDERS_MAX_BODY_BYTES", 64 * 1024)?,
            request_timeout,
            header_read_timeout,
            body_read_timeout,
            max_concurrent_requests: env.count("ORDERS_MAX_CONCURRENT_REQUESTS", 512)?,
            cors_origins,
            rate_limit_per_second: env.parse(
                "ORDERS_RATE_LIMIT_PER_SECOND",
                NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
                "a positive integer",
            )?,
            rate_limit_burst: env.parse(
                "ORDERS_RATE_LIMIT_BURST",
                NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
                "a positive integer",
            )?,
            signup_per_ip_per_minute: env.parse(
                "ORDERS_SIGNUP_RATE_PER_IP",
                NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
                "a positive integer (sign-ups per minute)",
            )?,
            trusted_proxies,
            signup_per_minute: env.parse(
                "ORDERS_SIGNUP_RATE",
                NonZeroU32::new(600).unwrap_or(NonZeroU32::MIN),
                "a positive integer (sign-ups per minute)",
            )?,
            webhook,
            smtp,
            database_url,
            db_max_connections,
            temporal_address: env.get("TEMPORAL_ADDRESS").unwrap_or_else(|| "127.0.0.1:7233".into()),
            temporal_namespace: env.get("TEMPORAL_NAMESPACE").unwrap_or_else(|| "default".into()),
            task_queue: env.get("TEMPORAL_TASK_QUEUE").unwrap_or_else(|| "orders".into()),
            temporal_tls,
            temporal_api_key,
            http_addr: env.parse(
                "ORDERS_HTTP_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 8080)),
                "a socket address like 0.0.0.0:8080",
            )?,
            metrics_addr: env.parse(
                "ORDERS_METRICS_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 9463)),
                "a socket address like 0.0.0.0:9463",
            )?,
            jwt,
            pricing,
            payment_gateway: env.integration("ORDERS_PAYMENT_GATEWAY", "ORDERS_PAYMENT_GATEWAY_URL")?,
            carrier: env.integration("ORDERS_CARRIER", "ORDERS_CARRIER_URL")?,
            http_client_timeout: env.duration("ORDERS_HTTP_CLIENT_TIMEOUT", Duration::from_secs(10))?,
            review_threshold: env.money("ORDERS_REVIEW_THRESHOLD", Decimal::new(100000, 2))?,
            review_deadline: env.duration("ORDERS_REVIEW_DEADLINE", Duration::from_secs(24 * 3600))?,
            delivery_deadline: env.duration("ORDERS_DELIVERY_DEADLINE", Duration::from_secs(14 * 24 * 3600))?,
            verification_deadline: env.duration("ORDERS_VERIFICATION_DEADLINE", Duration::from_secs(72 * 3600))?,
            verification_key,
            events_fallback_poll,
            temporal_ui_url: match env.get("ORDERS_TEMPORAL_UI_URL").filter(|_| process.api()) {
                None => None,
                Some(url) => {
                    Some(http_url("ORDERS_TEMPORAL_UI_URL", &url, false)?.as_str().trim_end_matches('/').to_owned())
                }
            },
            simulated_carrier_events: match env.get("ORDERS_SIM_CARRIER_IN_TRANSIT_AFTER") {
                None => None,
                Some(_) => Some(SimulatedCarrierReports {
                    in_transit_after: env.duration("ORDERS_SIM_CARRIER_IN_TRANSIT_AFTER", Duration::ZERO)?,
                    delivered_after: env.duration("ORDERS_SIM_CARRIER_DELIVERED_AFTER", Duration::from_secs(10))?,
                }),
            },
            worker,
            log_format,
            shutdown_grace: env.duration("ORDERS_SHUTDOWN_GRACE", Duration::from_secs(30))?,
            shutdown_delay: env.duration("ORDERS_SHUTDOWN_DELAY", Duration::ZERO)?,
            start_recovery_interval: env.duration("ORDERS_START_RECOVERY_INTERVAL", Duration::from_secs(10))?,
        })
    }
}

/// A URL parsed (not only prefix-checked): http(s) (https only when `https_only`)
/// with a host, so a typo is refused at start with the variable named.
fn http_url(var: &'static str, value: &str, https_only: bool) -> Result<reqwest::Url, ConfigError> {
    let schemes: &[&str] = if https_only { &["https"] } else { &["http", "https"] };
    let what = if https_only { "an https:// URL" } else { "an http:// or https:// URL" };
    match reqwest::Url::parse(value.trim()) {
        Ok(url) if schemes.contains(&url.scheme()) && url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        Ok(_) => Err(ConfigError { var, message: format!("must be {what} with a host, got {value:?}") }),
        Err(e) => Err(ConfigError { var, message: format!("must be {what}: {e}") }),
    }
}

fn database_url(env: &Env<'_>) -> Result<Secret, ConfigError> {
    let url = env.required("DATABASE_URL")?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError { var: "DATABASE_URL", message: "must be a postgres:// URL".into() });
    }
    Ok(Secret::new(url))
}

fn log_format(env: &Env<'_>) -> Result<LogFormat, ConfigError> {
    match env.get("ORDERS_LOG_FORMAT").as_deref().unwrap_or("json") {
        "json" => Ok(LogFormat::Json),
        "text" => Ok(LogFormat::Text),
        other => Err(ConfigError { var: "ORDERS_LOG_FORMAT", message: format!("must be json or text, got {other:?}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut env: BTreeMap<String, String> = BTreeMap::from([
            ("DATABASE_URL".into(), "postgres://u:hunter2@localhost/orders".into()),
            ("ORDERS_JWT_SECRET".into(), "0123456789abcdef0123456789abcdef".into()),
            ("ORDERS_VERIFICATION_KEY".into(), "fedcba9876543210fedcba9876543210".into()),
        ]);
        for (k, v) in vars {
            env.insert((*k).into(), (*v).into());
        }
        Settings::from_lookup(&|k| env.get(k).cloned())
    }

    /// Every variable this module reads is in docs/configuration.md (which `--help` prints).
    #[test]
    fn every_variable_read_is_documented() {
        let source = include_str!("config.rs");
        let documented: std::collections::BTreeSet<String> =
            documented_variables().into_iter().flat_map(|(names, _, _)| names).collect();
        let read = regex::Regex::new(r#"env\.[a-z_]+\(\s*"([A-Z][A-Z0-9_]+)""#).unwrap();
        let mut missing: Vec<&str> = read
            .captures_iter(source)
            .map(|c| c.get(1).map_or("", |m| m.as_str()))
            .filter(|v| !documented.contains(*v))
            .collect();
        missing.dedup();
        assert!(missing.is_empty(), "not in docs/configuration.md: {missing:?}");
        assert!(variables_help().contains("ORDERS_VERIFICATION_KEY"));
    }

    #[test]
    fn defaults_are_valid_and_secrets_are_redacted() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.task_queue, "orders");
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.payment_gateway, Integration::Simulated);
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        assert!(!debug.contains("fedcba9876543210"), "{debug}");
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&str, &str, &str)] = &[
            ("ORDERS_JWT_SECRET", "short", "ORDERS_JWT_SECRET"),
            ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
            ("ORDERS_HTTP_ADDR", "nope", "ORDERS_HTTP_ADDR"),
            ("ORDERS_TAX_RATE", "-0.1", "ORDERS_TAX_RATE"),
            ("ORDERS_PAYMENT_GATEWAY", "http", "ORDERS_PAYMENT_GATEWAY_URL"),
            ("ORDERS_CARRIER", "carrier-pigeon", "ORDERS_CARRIER"),
            ("ORDERS_DB_MAX_CONNECTIONS", "5", "ORDERS_DB_MAX_CONNECTIONS"),
            ("ORDERS_SHUTDOWN_GRACE", "soon", "ORDERS_SHUTDOWN_GRACE"),
            ("TEMPORAL_TLS_CLIENT_CERT_PATH", "/c.pem", "TEMPORAL_TLS_CLIENT_CERT_PATH"),
            ("TEMPORAL_TLS", "maybe", "TEMPORAL_TLS"),
            ("ORDERS_CANCEL_WAIT", "30s", "ORDERS_CANCEL_WAIT"),
            ("ORDERS_VERIFICATION_KEY", "short", "ORDERS_VERIFICATION_KEY"),
            ("ORDERS_EVENTS_FALLBACK_POLL", "0s", "ORDERS_EVENTS_FALLBACK_POLL"),
            ("ORDERS_TRUSTED_PROXIES", "10.0.0.0/8, nonsense", "ORDERS_TRUSTED_PROXIES"),
            ("ORDERS_WEBHOOK_URL", "http://", "ORDERS_WEBHOOK_URL"),
            ("ORDERS_WEBHOOK_URL", "ftp://shop.example/hooks", "ORDERS_WEBHOOK_URL"),
            ("ORDERS_TEMPORAL_UI_URL", "localhost:8233", "ORDERS_TEMPORAL_UI_URL"),
        ];
        for (var, value, named) in cases {
            let err = settings(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, *named, "{var}={value}: {err}");
        }
        // Each process needs only what it uses: the worker no JWT key, the API a pool of any size.
        let worker_env = |k: &str| match k {
            "DATABASE_URL" => Some("postgres://localhost/orders".to_owned()),
            "ORDERS_VERIFICATION_KEY" => Some("fedcba9876543210fedcba9876543210".to_owned()),
            "ORDERS_DB_MAX_CONNECTIONS" => Some("5".to_owned()),
            _ => None,
        };
        let err = Settings::from_lookup_for(Process::Worker, &worker_env).unwrap_err();
        assert_eq!(err.var, "ORDERS_DB_MAX_CONNECTIONS", "the worker's pool must fit its activities");
        let worker = Settings::from_lookup_for(Process::Worker, &|k| match k {
            "ORDERS_DB_MAX_CONNECTIONS" => None,
            _ => worker_env(k),
        })
        .unwrap();
        assert!(worker.jwt.is_none(), "the worker reads no JWT settings");
        assert_eq!(Settings::from_lookup_for(Process::Api, &worker_env).unwrap_err().var, "ORDERS_JWT_SECRET");
        let api_env = |k: &str| match k {
            "ORDERS_JWT_SECRET" => Some("0123456789abcdef0123456789abcdef".to_owned()),
            _ => worker_env(k),
        };
        assert!(Settings::from_lookup_for(Process::Api, &api_env).is_ok(), "the API's pool is not the worker's");
        let missing = Settings::from_lookup(&|_| None).unwrap_err();
        assert_eq!(missing.var, "ORDERS_JWT_SECRET");
    }

    #[test]
    fn temporal_tls_is_on_when_configured_and_for_an_api_key() {
        assert_eq!(settings(&[]).unwrap().temporal_tls, None);
        let cloud = settings(&[("TEMPORAL_API_KEY", "key-123")]).unwrap();
        assert_eq!(cloud.temporal_tls, Some(TemporalTls::default()), "an API key implies TLS with system roots");
        assert!(!format!("{cloud:?}").contains("key-123"), "the API key is redacted");
        let mtls = settings(&[("TEMPORAL_TLS_CLIENT_CERT_PATH", "/c.pem"), ("TEMPORAL_TLS_CLIENT_KEY_PATH", "/k.pem")]);
        assert_eq!(mtls.unwrap().temporal_tls.unwrap().client_key_path.as_deref(), Some("/k.pem"));
        assert!(settings(&[("TEMPORAL_TLS", "false"), ("TEMPORAL_API_KEY", "k")]).is_err(), "no API key in clear");
        assert!(settings(&[("TEMPORAL_TLS", "true")]).unwrap().temporal_tls.is_some());
    }
}
