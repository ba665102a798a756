//! `[proxy]` in `berth.toml`: the ports the proxy serves on, its TLS mode, and where its
//! admin endpoint listens (a unix socket, or a loopback address: nothing else may reach it).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ProxyError;

/// How the proxy serves TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain HTTP on `http_port` only.
    #[default]
    Off,
    /// HTTPS with certificates from the proxy's own local CA (not trusted by browsers).
    Internal,
    /// HTTPS with certificates from Let's Encrypt (ACME), for public domains.
    Acme,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Off => "off",
            TlsMode::Internal => "internal",
            TlsMode::Acme => "acme",
        })
    }
}

/// `[proxy]` as the admin wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    pub http_port: u16,
    pub https_port: u16,
    pub tls: TlsMode,
    /// The ACME account's contact; required with `tls = "acme"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme_email: Option<String>,
    /// `unix:/path/to/admin.sock` or `127.0.0.1:2019`; default `unix:<BERTH_ROOT>/proxy/admin.sock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// The address the proxy listens on; default every interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<IpAddr>,
    /// The longest `[web].drain_seconds` an app gets.
    pub max_drain_seconds: u32,
}

/// `max_drain_seconds` unless `berth.toml` says otherwise.
pub const DEFAULT_MAX_DRAIN_SECONDS: u32 = 300;

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            http_port: 80,
            https_port: 443,
            tls: TlsMode::Off,
            acme_email: None,
            admin: None,
            bind: None,
            max_drain_seconds: DEFAULT_MAX_DRAIN_SECONDS,
        }
    }
}

/// Where berth reaches the proxy's admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminEndpoint {
    Unix(PathBuf),
    Loopback(SocketAddr),
}

impl AdminEndpoint {
    /// Caddy's spelling of the listen address: `unix//abs/path` or `127.0.0.1:2019`.
    pub fn caddy_listen(&self) -> String {
        match self {
            AdminEndpoint::Unix(path) => format!("unix/{}", path.display()),
            AdminEndpoint::Loopback(address) => address.to_string(),
        }
    }
}

impl fmt::Display for AdminEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminEndpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            AdminEndpoint::Loopback(address) => write!(f, "{address}"),
        }
    }
}

/// `[proxy]`, checked: what the proxy implementations are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    pub http_port: u16,
    pub https_port: u16,
    pub tls: Tls,
    pub admin: AdminEndpoint,
    pub bind: Option<IpAddr>,
    /// Where the proxy keeps certificates and its local CA.
    pub data_dir: PathBuf,
    /// Where berth marks which of each app's upstream sets serves (see `caddy::live`).
    pub live_dir: PathBuf,
    /// The longest drain an app gets.
    pub max_drain: Duration,
}

impl Serving {
    /// The URL of `host` through the proxy.
    pub fn url(&self, host: &super::Domain) -> String {
        match self.tls {
            Tls::Off if self.http_port == 80 => format!("http://{host}"),
            Tls::Off => format!("http://{host}:{}", self.http_port),
            _ if self.https_port == 443 => format!("https://{host}"),
            _ => format!("https://{host}:{}", self.https_port),
        }
    }
}

/// The TLS mode with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    Off,
    Internal,
    Acme { email: String },
}

impl Tls {
    pub fn mode(&self) -> TlsMode {
        match self {
            Tls::Off => TlsMode::Off,
            Tls::Internal => TlsMode::Internal,
            Tls::Acme { .. } => TlsMode::Acme,
        }
    }
}

impl ProxySettings {
    /// Checks the settings; `proxy_dir` is `BERTH_ROOT/proxy`, home of the default admin socket.
    pub fn check(&self, proxy_dir: &Path) -> Result<Serving, ProxyError> {
        let bad = |message: String| ProxyError::Settings(message);
        if self.http_port == 0 || self.https_port == 0 {
            return Err(bad("http_port and https_port must be ports from 1 to 65535".into()));
        }
        if self.http_port == self.https_port {
            return Err(bad(format!(
                "http_port and https_port are both {}; give HTTPS a port of its own",
                self.http_port
            )));
        }
        let tls = match (self.tls, &self.acme_email) {
            (TlsMode::Acme, Some(email)) => Tls::Acme { email: check_email(email)? },
            (TlsMode::Acme, None) => {
                return Err(bad(
                    "tls = \"acme\" needs acme_email = \"you@example.com\", the ACME account's contact"
                        .into(),
                ));
            }
            (mode, Some(_)) => {
                return Err(bad(format!(
                    "acme_email is only used with tls = \"acme\" (tls is \"{mode}\"); remove it or set tls = \"acme\""
                )));
            }
            (TlsMode::Off, None) => Tls::Off,
            (TlsMode::Internal, None) => Tls::Internal,
        };
        let admin = match &self.admin {
            None => AdminEndpoint::Unix(proxy_dir.join("admin.sock")),
            Some(text) => parse_admin(text)?,
        };
        Ok(Serving {
            http_port: self.http_port,
            https_port: self.https_port,
            tls,
            admin,
            bind: self.bind,
            data_dir: proxy_dir.join("data"),
            live_dir: proxy_dir.join("live"),
            max_drain: Duration::from_secs(self.max_drain_seconds.into()),
        })
    }
}

fn check_email(email: &str) -> Result<String, ProxyError> {
    let valid = email.split_once('@').is_some_and(|(user, host)| {
        !user.is_empty() && host.contains('.') && !email.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if valid {
        Ok(email.to_string())
    } else {
        Err(ProxyError::Settings(format!("acme_email \"{email}\" is not an email address")))
    }
}

fn parse_admin(text: &str) -> Result<AdminEndpoint, ProxyError> {
    if let Some(path) = text.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(ProxyError::Settings(format!(
                "admin socket \"{}\" must be an absolute path",
                path.display()
            )));
        }
        return Ok(AdminEndpoint::Unix(path));
    }
    let address: SocketAddr = text.parse().map_err(|_| {
        ProxyError::Settings(format!(
            "admin = \"{text}\" is neither \"unix:/path/to/admin.sock\" nor a loopback address such as \"127.0.0.1:2019\""
        ))
    })?;
    if !address.ip().is_loopback() {
        return Err(ProxyError::Settings(format!(
            "admin = \"{text}\" is not a loopback address: the proxy's admin endpoint changes every route, so only this machine may reach it (use 127.0.0.1 or a unix socket)"
        )));
    }
    Ok(AdminEndpoint::Loopback(address))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Result<Serving, String> {
        let settings: ProxySettings = toml::from_str(toml_text).map_err(|e| e.message().to_string())?;
        settings.check(Path::new("/r/proxy")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_serve_http_on_80_with_a_private_socket() {
        let serving = check("").unwrap();
        assert_eq!((serving.http_port, serving.https_port), (80, 443));
        assert_eq!(serving.tls, Tls::Off);
        assert_eq!(serving.admin, AdminEndpoint::Unix("/r/proxy/admin.sock".into()));
        assert_eq!(serving.admin.caddy_listen(), "unix//r/proxy/admin.sock");
        assert_eq!(serving.data_dir, Path::new("/r/proxy/data"));
    }

    #[test]
    fn every_setting_is_read() {
        let serving = check(
            "http_port = 8080\nhttps_port = 8443\ntls = \"acme\"\nacme_email = \"ops@example.com\"\nadmin = \"127.0.0.1:2019\"\nbind = \"127.0.0.1\"",
        )
        .unwrap();
        assert_eq!((serving.http_port, serving.https_port), (8080, 8443));
        assert_eq!(serving.tls, Tls::Acme { email: "ops@example.com".into() });
        assert_eq!(serving.admin.caddy_listen(), "127.0.0.1:2019");
        assert_eq!(serving.bind, Some([127, 0, 0, 1].into()));
        assert_eq!(check("tls = \"internal\"").unwrap().tls, Tls::Internal);
    }

    #[test]
    fn bad_settings_say_what_to_change() {
        let errors: Vec<String> = [
            "tls = \"acme\"",
            "tls = \"internal\"\nacme_email = \"a@b.c\"",
            "tls = \"acme\"\nacme_email = \"nobody\"",
            "http_port = 8080\nhttps_port = 8080",
            "http_port = 0",
            "admin = \"0.0.0.0:2019\"",
            "admin = \"10.0.0.1:2019\"",
            "admin = \"localhost\"",
            "admin = \"unix:relative.sock\"",
        ]
        .iter()
        .map(|text| check(text).unwrap_err())
        .collect();
        insta::assert_snapshot!(errors.join("\n"), @r#"
        berth.toml [proxy]: tls = "acme" needs acme_email = "you@example.com", the ACME account's contact
        berth.toml [proxy]: acme_email is only used with tls = "acme" (tls is "internal"); remove it or set tls = "acme"
        berth.toml [proxy]: acme_email "nobody" is not an email address
        berth.toml [proxy]: http_port and https_port are both 8080; give HTTPS a port of its own
        berth.toml [proxy]: http_port and https_port must be ports from 1 to 65535
        berth.toml [proxy]: admin = "0.0.0.0:2019" is not a loopback address: the proxy's admin endpoint changes every route, so only this machine may reach it (use 127.0.0.1 or a unix socket)
        berth.toml [proxy]: admin = "10.0.0.1:2019" is not a loopback address: the proxy's admin endpoint changes every route, so only this machine may reach it (use 127.0.0.1 or a unix socket)
        berth.toml [proxy]: admin = "localhost" is neither "unix:/path/to/admin.sock" nor a loopback address such as "127.0.0.1:2019"
        berth.toml [proxy]: admin socket "relative.sock" must be an absolute path
        "#);
    }

    #[test]
    fn unknown_keys_and_modes_are_refused_by_the_parser() {
        assert!(check("tls = \"on\"").unwrap_err().contains("unknown variant `on`"));
        assert!(check("http-port = 80").unwrap_err().contains("unknown field `http-port`"));
        assert!(check("http_port = 70000").is_err());
    }
}
