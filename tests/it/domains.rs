//! `domains:*` and `proxy:report` through the built binary, with no proxy running: each change
//! is recorded and saved in the proxy's config file for its start; each refusal changes nothing.

use std::fs;

use crate::test::Test;

/// The warning a change prints when no proxy runs.
const NOT_RUNNING: &str = " !     The proxy is not running (unix:[ROOT]/proxy/admin.sock: No such file or directory (os error 2)); the routes are saved in [ROOT]/proxy/caddy.json and served when it starts (bash scripts/ensure-proxy.sh)\n";

/// Runs a domains change that must succeed without a proxy: its step, then the warning.
fn change(t: &Test, args: &[&str]) -> String {
    let out = t.ok(args);
    assert_eq!(out.stderr, NOT_RUNNING, "{out}");
    out.stdout
}

#[test]
fn domains_are_added_set_removed_and_cleared_as_in_dokku() {
    let t = Test::new();
    t.app("shop");
    insta::assert_snapshot!(change(&t, &["domains:add", "shop", "Shop.Example.com", "*.shop.example.com"]), @"-----> Adding shop.example.com *.shop.example.com to shop");
    change(&t, &["domains:add", "shop", "www.example.com"]);
    insta::assert_snapshot!(t.ok(["domains:report", "shop"]).stdout, @r"
    =====> shop domains information
           Domains app enabled:           true
           Domains app vhosts:            shop.example.com *.shop.example.com www.example.com
           Domains global enabled:        false
           Domains global vhosts:         
    ");
    let state = t.app_state("shop");
    assert!(
        state.contains(
            "domains = [\n    \"shop.example.com\",\n    \"*.shop.example.com\",\n    \"www.example.com\",\n]"
        ),
        "{state}"
    );
    change(&t, &["domains:remove", "shop", "*.shop.example.com"]);
    assert_eq!(
        t.ok(["domains:report", "shop", "--domains-app-vhosts"]).stdout,
        "shop.example.com www.example.com\n"
    );
    insta::assert_snapshot!(change(&t, &["domains:set", "shop", "a.example.org", "b.example.org"]), @"-----> Setting a.example.org b.example.org for shop");
    assert_eq!(
        t.ok(["domains:report", "shop", "--domains-app-vhosts"]).stdout,
        "a.example.org b.example.org\n"
    );
    insta::assert_snapshot!(change(&t, &["domains:clear", "shop"]), @"-----> Clearing domains in shop");
    assert_eq!(t.ok(["domains:report", "shop", "--domains-app-vhosts"]).stdout, "\n");
    assert!(!t.app_state("shop").contains("domains"), "{}", t.app_state("shop"));
}

#[test]
fn the_saved_proxy_config_routes_the_domains() {
    let t = Test::new();
    t.app("shop");
    change(&t, &["domains:add", "shop", "shop.example.com"]);
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(t.path("proxy/caddy.json")).unwrap()).unwrap();
    let routes = &config["apps"]["http"]["servers"]["berth"]["routes"];
    assert_eq!(routes[0]["@id"], "berth-shop", "{config:#}");
    assert_eq!(routes[0]["match"][0]["host"], serde_json::json!(["shop.example.com"]));
    assert_eq!(routes[0]["handle"][0]["status_code"], 503, "no release serves: {config:#}");
    assert_eq!(config["admin"]["listen"], format!("unix/{}", t.path_str("proxy/admin.sock")));
}

#[test]
fn every_app_answers_under_the_global_domains() {
    let t = Test::new();
    t.app("shop").app("blog");
    change(&t, &["domains:add", "shop", "shop.example.org"]);
    insta::assert_snapshot!(change(&t, &["domains:set-global", "example.com", "Example.NET"]), @"-----> Setting global domains: example.com example.net");
    insta::assert_snapshot!(t.ok(["domains:report"]).stdout, @r"
    =====> blog domains information
           Domains app enabled:           true
           Domains app vhosts:            blog.example.com blog.example.net
           Domains global enabled:        true
           Domains global vhosts:         example.com example.net
    =====> shop domains information
           Domains app enabled:           true
           Domains app vhosts:            shop.example.org shop.example.com shop.example.net
           Domains global enabled:        true
           Domains global vhosts:         example.com example.net
    ");
    insta::assert_snapshot!(t.ok(["domains:report", "blog", "--format", "json"]).stdout, @r#"{"app-enabled":"true","app-vhosts":"blog.example.com blog.example.net","domains-app-enabled":"true","domains-app-vhosts":"blog.example.com blog.example.net","domains-global-enabled":"true","domains-global-vhosts":"example.com example.net","global-enabled":"true","global-vhosts":"example.com example.net"}"#);
    insta::assert_snapshot!(change(&t, &["domains:clear-global"]), @"-----> Clearing global domains");
    assert_eq!(t.ok(["domains:report", "blog", "--domains-app-vhosts"]).stdout, "\n");
    assert!(!fs::read_to_string(t.path("global-domains.toml")).unwrap().contains("example"));
}

#[test]
fn a_domain_of_another_app_is_refused_with_its_owner() {
    let t = Test::new();
    t.app("shop").app("blog");
    change(&t, &["domains:add", "shop", "shop.example.com", "blog.example.net"]);
    change(&t, &["domains:set-global", "example.org"]);
    let mut outs = String::new();
    for args in [
        ["domains:add", "blog", "SHOP.example.com"],
        ["domains:set", "blog", "shop.example.org"],
        ["domains:set-global", "example.org", "example.net"],
    ] {
        outs.push_str(&t.args(args).refuse().to_string());
    }
    insta::assert_snapshot!(outs, @r"
    exit: 1
    --- stdout
    --- stderr
     !     shop.example.com is already a domain of app shop; remove it there first (berth domains:remove shop shop.example.com)
    exit: 1
    --- stdout
    --- stderr
     !     shop.example.org is where app shop answers under the global domain example.org; pick another domain
    exit: 1
    --- stdout
    --- stderr
     !     blog.example.net is already a domain of app shop; remove it there first (berth domains:remove shop blog.example.net)
    ");
}

#[test]
fn bad_domains_and_unknown_apps_are_refused_and_change_nothing() {
    let t = Test::new();
    t.app("shop");
    change(&t, &["domains:add", "shop", "shop.example.com"]);
    let long_label = format!("{}.com", "a".repeat(64));
    let mut outs = String::new();
    for args in [
        vec!["domains:add", "shop", "bad_name.com"],
        vec!["domains:add", "shop", "a..example.com"],
        vec!["domains:add", "shop", "-a.example.com"],
        vec!["domains:add", "shop", "a.*.example.com"],
        vec!["domains:add", "shop", &long_label],
        vec!["domains:add", "shop", "x.example.com", "X.example.com"],
        vec!["domains:add", "shop", "shop.example.com"],
        vec!["domains:remove", "shop", "x.example.com"],
        vec!["domains:add", "nope", "x.example.com"],
        vec!["domains:report", "nope"],
        vec!["domains:set-global", "*.example.com"],
        vec!["domains:set-global", "bad_name"],
    ] {
        outs.push_str(&t.args(args).refuse().to_string());
    }
    insta::assert_snapshot!(outs, @r#"
    exit: 1
    --- stdout
    --- stderr
     !     "bad_name.com" is not a valid domain: labels take letters, digits and "-" only
    exit: 1
    --- stdout
    --- stderr
     !     "a..example.com" is not a valid domain: it has an empty label ("..", or a leading or trailing ".")
    exit: 1
    --- stdout
    --- stderr
     !     "-a.example.com" is not a valid domain: a label cannot start or end with "-"
    exit: 1
    --- stdout
    --- stderr
     !     "a.*.example.com" is not a valid domain: "*" is only allowed as the first label ("*.example.com")
    exit: 1
    --- stdout
    --- stderr
     !     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com" is not a valid domain: a label is longer than 63 characters
    exit: 1
    --- stdout
    --- stderr
     !     x.example.com is given twice
    exit: 1
    --- stdout
    --- stderr
     !     app shop already has the domain shop.example.com
    exit: 1
    --- stdout
    --- stderr
     !     app shop has no domain x.example.com; its domains: shop.example.com
    exit: 1
    --- stdout
    --- stderr
     !     App nope does not exist
    exit: 1
    --- stdout
    --- stderr
     !     App nope does not exist
    exit: 1
    --- stdout
    --- stderr
     !     a global domain cannot be a wildcard ("*.example.com"): each app answers at <app>.<global domain>
    exit: 1
    --- stdout
    --- stderr
     !     "bad_name" is not a valid domain: labels take letters, digits and "-" only
    "#);
}

#[test]
fn a_domains_command_without_domains_is_a_usage_error() {
    let t = Test::new();
    t.app("shop");
    let out = t.args(["domains:add", "shop"]).usage_error();
    assert!(out.stderr.contains("<DOMAIN>..."), "{out}");
    t.args(["domains:set-global"]).usage_error();
}

#[test]
fn bad_proxy_settings_refuse_a_change() {
    let t = Test::new();
    t.app("shop");
    fs::write(t.path("berth.toml"), "[proxy]\ntls = \"acme\"\n").unwrap();
    insta::assert_snapshot!(t.args(["domains:add", "shop", "shop.example.com"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     berth.toml [proxy]: tls = "acme" needs acme_email = "you@example.com", the ACME account's contact
    "#);
    fs::write(t.path("berth.toml"), "[proxy]\nadmin = \"0.0.0.0:2019\"\n").unwrap();
    insta::assert_snapshot!(t.args(["domains:add", "shop", "shop.example.com"]).refuse(), @r#"
    exit: 1
    --- stdout
    --- stderr
     !     berth.toml [proxy]: admin = "0.0.0.0:2019" is not a loopback address: the proxy's admin endpoint changes every route, so only this machine may reach it (use 127.0.0.1 or a unix socket)
    "#);
}

#[test]
fn proxy_report_shows_routes_and_tls_without_a_running_proxy() {
    let t = Test::new();
    t.app("shop");
    fs::write(t.path("berth.toml"), "[proxy]\ntls = \"internal\"\nhttps_port = 8443\n").unwrap();
    change(&t, &["domains:add", "shop", "shop.example.com", "*.shop.example.com"]);
    insta::assert_snapshot!(t.ok(["proxy:report", "shop"]).stdout, @"
    =====> shop proxy information
           Proxy admin:                   unix:[ROOT]/proxy/admin.sock
           Proxy draining:                
           Proxy hosts:                   shop.example.com *.shop.example.com
           Proxy http port:               80
           Proxy https port:              8443
           Proxy in sync:                 
           Proxy running:                 false
           Proxy state:                   down
           Proxy tls:                     internal
           Proxy type:                    caddy
           Proxy upstreams:               
           Proxy urls:                    https://shop.example.com:8443
    ");
    assert_eq!(t.ok(["proxy:report", "shop", "--proxy-urls"]).stdout, "https://shop.example.com:8443\n");
}

/// Only the admin assigns domains: `app.toml` has no key that could claim one.
#[test]
fn app_toml_cannot_claim_a_domain() {
    let policy = berth::manifest::Policy::default();
    for text in [
        "domains = [\"x.example.com\"]\n",
        "[web]\ndomains = [\"x.example.com\"]\n",
        "[proxy]\nhost = \"x\"\n",
    ] {
        let problems = berth::manifest::check(text.as_bytes(), &policy, &[]).unwrap_err();
        let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(rendered.iter().any(|p| p.contains("unknown")), "{text}: {rendered:?}");
    }
}
