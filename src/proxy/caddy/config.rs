//! Caddy's whole JSON config from the settings and the table: one HTTP server, one route per
//! app (exact host names first, so they win over another app's wildcard) with a
//! `reverse_proxy` per upstream set of the app (the one serving is chosen at each request by
//! a marker file, [`live`]) that holds and retries requests while its upstreams do not
//! answer, and a 404 for every other host.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::super::settings::{Serving, Tls};
use super::super::table::{Route, Table};
use super::live;
use crate::names::AppName;

/// The server's name in Caddy's config (`apps.http.servers.berth`).
pub const SERVER: &str = "berth";

/// How long a held request waits between two tries of its upstream.
const TRY_INTERVAL: &str = "100ms";

pub fn render(serving: &Serving, table: &Table) -> Value {
    let mut apps = json!({ "http": http_app(serving, table) });
    match &serving.tls {
        Tls::Off => {}
        Tls::Internal => {
            apps["tls"] = issuer(json!({ "module": "internal" }));
            // Caddy would add its root to the host's trust store: not berth's to change.
            apps["pki"] = json!({ "certificate_authorities": { "local": { "install_trust": false } } });
        }
        Tls::Acme { email } => apps["tls"] = issuer(json!({ "module": "acme", "email": email })),
    }
    json!({
        // berth's file is the config Caddy starts with: Caddy keeps no copy of its own.
        "admin": { "listen": serving.admin.caddy_listen(), "config": { "persist": false } },
        "storage": { "module": "file_system", "root": serving.data_dir },
        "apps": apps,
    })
}

fn issuer(issuer: Value) -> Value {
    json!({ "automation": { "policies": [{ "issuers": [issuer] }] } })
}

fn http_app(serving: &Serving, table: &Table) -> Value {
    let port = if serving.tls == Tls::Off { serving.http_port } else { serving.https_port };
    let listen = match serving.bind {
        Some(ip) => SocketAddr::new(ip, port).to_string(),
        None => format!(":{port}"),
    };
    let mut server = json!({ "listen": [listen], "routes": routes(table, &serving.live_dir) });
    if serving.tls == Tls::Off {
        server["automatic_https"] = json!({ "disable": true });
    }
    // With TLS, Caddy adds the HTTP server on http_port itself, redirecting to HTTPS.
    json!({
        "http_port": serving.http_port,
        "https_port": serving.https_port,
        "servers": { SERVER: server },
    })
}

fn routes(table: &Table, live_dir: &Path) -> Vec<Value> {
    let mut exact = Vec::new();
    let mut wildcards = Vec::new();
    for (app, route) in &table.apps {
        let (wild, plain): (Vec<_>, Vec<_>) = route.hosts.iter().partition(|host| host.is_wildcard());
        if !plain.is_empty() {
            exact.push(app_route(
                format!("berth-{app}"),
                json!([{ "host": plain }]),
                handler(app, route, live_dir),
            ));
        }
        if !wild.is_empty() {
            wildcards.push(app_route(
                format!("berth-{app}-wildcards"),
                json!([{ "host": wild }]),
                handler(app, route, live_dir),
            ));
        }
    }
    let fallback = json!({
        "handle": [{ "handler": "static_response", "status_code": 404, "body": "No app is served at this address\n" }],
    });
    exact.into_iter().chain(wildcards).chain([fallback]).collect()
}

fn app_route(id: String, matcher: Value, handler: Value) -> Value {
    json!({ "@id": id, "match": matcher, "handle": [handler], "terminal": true })
}

/// Every upstream set of the app, each tried when its marker says it serves (see [`live`]),
/// twice over, then a 503: the config stays the same whichever set serves, and whether any
/// does. Caddy checks the markers one route after the other, so a request checked while berth
/// moved the link from a later set to an earlier one matches none of them in the first pass;
/// the second pass sees the link where it now points (berth moves it at most once per
/// settle, 100 ms), so only an app with no serving set answers 503.
fn handler(app: &AppName, route: &Route, live_dir: &Path) -> Value {
    let body = format!("{app} has no running release\n");
    let down = json!({ "handler": "static_response", "status_code": 503, "body": body });
    let sets = route.sets();
    if sets.is_empty() {
        return down;
    }
    let mut routes: Vec<Value> = sets
        .iter()
        .map(|set| {
            let marker = json!({ "root": live_dir, "try_files": [live::marker(app, set)] });
            json!({ "match": [{ "file": marker }], "handle": [proxy(set, route.hold)], "terminal": true })
        })
        .collect();
    routes.extend_from_within(..);
    routes.push(json!({ "handle": [down] }));
    json!({ "handler": "subroute", "routes": routes })
}

/// A `reverse_proxy` that, while no upstream answers, retries for up to `hold`.
fn proxy(upstreams: &[SocketAddr], hold: Duration) -> Value {
    let upstreams: Vec<Value> = upstreams.iter().map(|a| json!({ "dial": a.to_string() })).collect();
    json!({
        "handler": "reverse_proxy",
        "upstreams": upstreams,
        "load_balancing": { "try_duration": go_duration(hold), "try_interval": TRY_INTERVAL },
    })
}

/// A duration as Caddy reads it: `30s`, `1500ms`.
fn go_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::proxy::records::Records;
    use crate::proxy::settings::{ProxySettings, TlsMode};
    use crate::proxy::{Domain, Route, Target};

    fn serving(tls: TlsMode) -> Serving {
        let settings = ProxySettings {
            tls,
            http_port: 8080,
            https_port: 8443,
            acme_email: (tls == TlsMode::Acme).then(|| "ops@example.com".to_string()),
            ..ProxySettings::default()
        };
        settings.check(Path::new("/var/lib/berth/proxy")).unwrap()
    }

    fn domains(names: &[&str]) -> Vec<Domain> {
        names.iter().map(|n| Domain::new(n).unwrap()).collect()
    }

    /// Three apps under the global domain `example.com`: `api` with its own domains too (one a
    /// wildcard) and a draining upstream, `web` with no domain of its own, held while its next
    /// instance starts, and `idle`, with no release.
    fn table() -> Table {
        let records = Records {
            own: [
                ("api", domains(&["api.example.org", "*.api.example.org"])),
                ("web", vec![]),
                ("idle", vec![]),
            ]
            .into_iter()
            .map(|(app, own)| (AppName::new(app).unwrap(), own))
            .collect(),
            globals: domains(&["example.com"]),
        };
        let target = |app: &str| match app {
            "api" => Target::Up(vec![SocketAddr::from(([127, 0, 0, 1], 32770))]),
            "web" => Target::Held(SocketAddr::from(([127, 0, 0, 1], 40001))),
            _ => Target::Down,
        };
        let mut table = Table::default();
        for app in records.own.keys() {
            table.apps.insert(app.clone(), Route::new(records.hosts(app), target(app.as_str())));
        }
        let api = table.apps.get_mut(&AppName::new("api").unwrap()).unwrap();
        api.draining.push(SocketAddr::from(([127, 0, 0, 1], 32768)));
        table.apps.get_mut(&AppName::new("web").unwrap()).unwrap().hold = Duration::from_millis(2500);
        table
    }

    fn pretty(value: &Value) -> String {
        serde_json::to_string_pretty(value).unwrap()
    }

    #[test]
    fn plain_http_routes_every_app_by_host() {
        insta::assert_snapshot!(pretty(&render(&serving(TlsMode::Off), &table())), @r#"
        {
          "admin": {
            "config": {
              "persist": false
            },
            "listen": "unix//var/lib/berth/proxy/admin.sock"
          },
          "apps": {
            "http": {
              "http_port": 8080,
              "https_port": 8443,
              "servers": {
                "berth": {
                  "automatic_https": {
                    "disable": true
                  },
                  "listen": [
                    ":8080"
                  ],
                  "routes": [
                    {
                      "@id": "berth-api",
                      "handle": [
                        {
                          "handler": "subroute",
                          "routes": [
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "30s",
                                    "try_interval": "100ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "127.0.0.1:32768"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "file": {
                                    "root": "/var/lib/berth/proxy/live",
                                    "try_files": [
                                      "/api/127.0.0.1-32768"
                                    ]
                                  }
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "30s",
                                    "try_interval": "100ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "127.0.0.1:32770"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "file": {
                                    "root": "/var/lib/berth/proxy/live",
                                    "try_files": [
                                      "/api/127.0.0.1-32770"
                                    ]
                                  }
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "30s",
                                    "try_interval": "100ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "127.0.0.1:32768"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "file": {
                                    "root": "/var/lib/berth/proxy/live",
                                    "try_files": [
                                      "/api/127.0.0.1-32768"
                                    ]
                                  }
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "30s",
                                    "try_interval": "100ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "127.0.0.1:32770"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "file": {
                                    "root": "/var/lib/berth/proxy/live",
                                    "try_files": [
                                      "/api/127.0.0.1-32770"
                                    ]
                                  }
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "body": "api has no running release\n",
                                  "handler": "static_response",
                                  "status_code": 503
                                }
                              ]
                            }
                          ]
                        }
                      ],
                      "match": [
                        {
                          "host": [
                            "api.example.org",
                            "api.example.com"
                          ]
                        }
                      ],
                      "terminal": true
                    },
                    {
                      "@id": "berth-idle",
                      "handle": [
                        {
                          "body": "idle has no running release\n",
                          "handler": "static_response",
                          "status_code": 503
                        }
                      ],
                      "match": [
                        {
                          "host": [
                            "idle.example.com"
                          ]
                        }
                      ],
                      "terminal": true
                    },
                    {
                      "@id": "berth-web",
                      "handle": [
                        {
                          "handler": "subroute",
                          "routes": [
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "2500ms",
                                    "try_interval": "100ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "127.0.0.1:40001"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "file": {
                                    "root": "/var/lib/berth/proxy/live",
                                    "try_files": [
                                      "/web/127.0.0.1-40001"
                                    ]
                                  }
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "2500ms",
                                    "try_interval": "100ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "127.0.0.1:40001"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "file": {
                                    "root": "/var/lib/berth/proxy/live",
                                    "try_files": [
                                      "/web/127.0.0.1-40001"
                                    ]
                                  }
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "body": "web has no running release\n",
                                  "handler": "static_response",
                                  "status_code": 503
                                }
                              ]
                            }
                          ]
                        }
                      ],
                      "match": [
                        {
                          "host": [
                            "web.example.com"
                          ]
                        }
                      ],
                      "terminal": true
                    },
                    {
                      "@id": "berth-api-wildcards",
                      "handle": [
                        {
                          "handler": "subroute",
                          "routes": [
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "30s",
                                    "try_interval": "100ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "127.0.0.1:32768"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "file": {
                                    "root": "/var/lib/berth/proxy/live",
                                    "try_files": [
                                      "/api/127.0.0.1-32768"
                                    ]
                                  }
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "30s",
                                    "try_interval": "100ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "127.0.0.1:32770"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "file": {
                                    "root": "/var/lib/berth/proxy/live",
                                    "try_files": [
                                      "/api/127.0.0.1-32770"
                                    ]
                                  }
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "30s",
                                    "try_interval": "100ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "127.0.0.1:32768"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "file": {
                                    "root": "/var/lib/berth/proxy/live",
                                    "try_files": [
                                      "/api/127.0.0.1-32768"
                                    ]
                                  }
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "handler": "reverse_proxy",
                                  "load_balancing": {
                                    "try_duration": "30s",
                                    "try_interval": "100ms"
                                  },
                                  "upstreams": [
                                    {
                                      "dial": "127.0.0.1:32770"
                                    }
                                  ]
                                }
                              ],
                              "match": [
                                {
                                  "file": {
                                    "root": "/var/lib/berth/proxy/live",
                                    "try_files": [
                                      "/api/127.0.0.1-32770"
                                    ]
                                  }
                                }
                              ],
                              "terminal": true
                            },
                            {
                              "handle": [
                                {
                                  "body": "api has no running release\n",
                                  "handler": "static_response",
                                  "status_code": 503
                                }
                              ]
                            }
                          ]
                        }
                      ],
                      "match": [
                        {
                          "host": [
                            "*.api.example.org"
                          ]
                        }
                      ],
                      "terminal": true
                    },
                    {
                      "handle": [
                        {
                          "body": "No app is served at this address\n",
                          "handler": "static_response",
                          "status_code": 404
                        }
                      ]
                    }
                  ]
                }
              }
            }
          },
          "storage": {
            "module": "file_system",
            "root": "/var/lib/berth/proxy/data"
          }
        }
        "#);
    }

    #[test]
    fn internal_tls_serves_https_from_the_local_ca_without_touching_the_trust_store() {
        let config = render(&serving(TlsMode::Internal), &table());
        insta::assert_snapshot!(pretty(&config["apps"]["tls"]), @r#"
        {
          "automation": {
            "policies": [
              {
                "issuers": [
                  {
                    "module": "internal"
                  }
                ]
              }
            ]
          }
        }
        "#);
        insta::assert_snapshot!(pretty(&config["apps"]["pki"]), @r#"
        {
          "certificate_authorities": {
            "local": {
              "install_trust": false
            }
          }
        }
        "#);
        insta::assert_snapshot!(pretty(&config["apps"]["http"]["servers"]["berth"]["listen"]), @r#"
        [
          ":8443"
        ]
        "#);
        assert!(config["apps"]["http"]["servers"]["berth"].get("automatic_https").is_none());
    }

    #[test]
    fn acme_names_the_account() {
        let config = render(&serving(TlsMode::Acme), &table());
        insta::assert_snapshot!(pretty(&config["apps"]["tls"]), @r#"
        {
          "automation": {
            "policies": [
              {
                "issuers": [
                  {
                    "email": "ops@example.com",
                    "module": "acme"
                  }
                ]
              }
            ]
          }
        }
        "#);
        assert!(config["apps"].get("pki").is_none());
    }

    #[test]
    fn a_bind_address_is_the_only_interface_served() {
        let mut serving = serving(TlsMode::Off);
        serving.bind = Some([127, 0, 0, 1].into());
        let config = render(&serving, &Table::default());
        assert_eq!(config["apps"]["http"]["servers"]["berth"]["listen"], json!(["127.0.0.1:8080"]));
        let routes = config["apps"]["http"]["servers"]["berth"]["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 1, "an empty table serves the 404 alone");
    }
}
