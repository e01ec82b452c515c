//! The status page in a real browser: headless Chromium (WebDriver) loads `/` from the real
//! binary serving the shipped example. Japan is filled with the colour of the node that
//! `dig +subnet=126.0.0.0/24` gets; a drain through the admin API recolours it without a
//! page reload; a what-if on the page recolours the map and changes no live answer.
//! Screenshots go to target/screenshots/.

use std::time::Duration;

use geosteer_harness::webdriver::Browser;
use serde_json::Value;

use crate::support::nodes::http;
use crate::support::*;

/// The first address `dig +subnet=126.0.0.0/24` gets for the steered name.
fn dig_japan(server: &Server) -> String {
    let text = dig_text(
        server,
        &[
            "+norec",
            "+short",
            "+subnet=126.0.0.0/24",
            "ingest.live.example.net",
        ],
    );
    text.lines().next().unwrap_or_default().to_string()
}

/// Japan's node and fill on the page, and the legend's colour for that node.
fn japan_on_page(browser: &Browser) -> (String, String, String) {
    let value = browser.eval(
        "const p = document.querySelector('#countries path[data-cc=\"JP\"]');\
         if (!p) return null;\
         const node = p.dataset.node;\
         const legend = document.querySelector(`#legend li[data-node=\"${node}\"]`);\
         return [node, p.getAttribute('fill'), legend ? legend.dataset.color : ''];",
    );
    let part = |i: usize| value[i].as_str().unwrap_or_default().to_string();
    (part(0), part(1), part(2))
}

fn until_japan(browser: &Browser, want: &str, what: &str) {
    eventually(Duration::from_secs(15), what, || {
        let (node, fill, legend) = japan_on_page(browser);
        if node == want && !fill.is_empty() && fill == legend {
            Ok(())
        } else {
            Err(format!("Japan: {node} {fill} (legend {legend})"))
        }
    });
}

#[test]
fn the_map_shows_where_japan_goes_and_follows_a_drain_without_a_reload() {
    let server = Server::start(&repo("zones"), &repo("geo/dbip-country.mmdb"), &[]);
    let browser = Browser::start(1400, 1000);
    let shots = repo("target/screenshots");
    browser.goto(&format!(
        "http://{}/?name=ingest.live.example.net",
        server.admin
    ));
    let tokyo = node_with_address(&server, &dig_japan(&server));
    assert_eq!(tokyo, "tokyo-1");
    until_japan(&browser, &tokyo, "Japan coloured as dig's answer");
    // Nothing on the page comes from elsewhere.
    let foreign = browser.eval(
        "return performance.getEntriesByType('resource').map(e => e.name)\
           .filter(u => !u.startsWith(location.origin));",
    );
    assert_eq!(foreign, Value::Array(vec![]), "resources from elsewhere");
    browser.screenshot(&shots.join("status-page.png"));

    // A drain through the admin API: the page recolours Japan by itself.
    browser.eval("window.loadedOnce = 'yes'; return null;");
    let (status, body) = http(
        server.admin,
        "POST",
        "/nodes/live.example.net/tokyo-1/drain",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let instead = eventually(Duration::from_secs(10), "dig sees the drain", || {
        let node = node_with_address(&server, &dig_japan(&server));
        if node != tokyo { Ok(node) } else { Err(node) }
    });
    until_japan(&browser, &instead, "Japan recoloured after the drain");
    assert_eq!(
        browser.eval("return window.loadedOnce || 'reloaded';"),
        "yes",
        "the page was not reloaded"
    );
    let marker = browser.eval(
        "return document.querySelector('#markers circle[data-node=\"tokyo-1\"]').dataset.state;",
    );
    assert_eq!(marker, "drained");
    let timeline = browser.eval("return document.querySelector('#events').textContent;");
    assert!(
        timeline
            .as_str()
            .unwrap_or_default()
            .contains("tokyo-1: up → drained"),
        "{timeline}"
    );
    browser.screenshot(&shots.join("status-page-drained.png"));
    let (status, body) = http(
        server.admin,
        "POST",
        "/nodes/live.example.net/tokyo-1/obey",
        None,
    );
    assert_eq!(status, 200, "{body}");
    until_japan(&browser, &tokyo, "Japan back to Tokyo");

    // A what-if on the page: Tokyo down. The map shows where Japan would go; nothing live
    // changes.
    browser.eval(
        "document.querySelector('#nodes select[data-node=\"tokyo-1\"]').value = 'down';\
         document.querySelector('#preview').click(); return null;",
    );
    eventually(Duration::from_secs(15), "the what-if on the map", || {
        let mode = browser.eval("return document.body.dataset.mode;");
        let (node, fill, legend) = japan_on_page(&browser);
        if mode == "what-if" && node == instead && fill == legend {
            Ok(())
        } else {
            Err(format!("{mode} {node} {fill} {legend}"))
        }
    });
    let moves = browser.eval("return document.querySelector('#moves').textContent;");
    assert!(
        moves.as_str().unwrap_or_default().contains("tokyo-1"),
        "{moves}"
    );
    browser.screenshot(&shots.join("status-page-what-if.png"));
    assert_eq!(
        node_with_address(&server, &dig_japan(&server)),
        tokyo,
        "a what-if changes no live answer"
    );
    let (_, nodes) = http(server.admin, "GET", "/nodes", None);
    let nodes: Value = serde_json::from_str(&nodes).expect("nodes JSON");
    let tokyo_state = nodes
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["node"] == "tokyo-1")
        .expect("tokyo-1 listed");
    assert_eq!(tokyo_state["availability"], "up", "{tokyo_state}");
    // Back to live, by keyboard.
    browser.eval(
        "document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'})); return null;",
    );
    until_japan(&browser, &tokyo, "back to the live map");
    // The IPv6 census, chosen on the page: Japan as dig gets it for an IPv6 client.
    browser.eval(
        "const f = document.querySelector('#family'); f.value = '6';\
         f.dispatchEvent(new Event('change')); return null;",
    );
    let v6 = node_with_address(
        &server,
        dig_text(
            &server,
            &[
                "+short",
                "+subnet=2400:4050::/48",
                "ingest.live.example.net",
            ],
        )
        .lines()
        .next()
        .unwrap_or_default(),
    );
    eventually(
        Duration::from_secs(10),
        "the IPv6 census on the page",
        || {
            let family = browser.eval("return live && live.census ? live.census.family : null;");
            let (node, fill, legend) = japan_on_page(&browser);
            if family == 6 && node == v6 && fill == legend {
                Ok(())
            } else {
                Err(format!("{family} {node} {fill} {legend}"))
            }
        },
    );
    browser.eval("window.scrollTo(0, 0); return null;");
    browser.screenshot(&shots.join("status-page-ipv6.png"));
    eprintln!("screenshots in {}", shots.display());
}

/// Each family has its own census: a rule for IPv6 space sends Japan's IPv6 clients to
/// Singapore while its IPv4 clients stay with Tokyo, as dig says for each.
#[test]
fn the_ipv6_census_follows_a_rule_for_ipv6_space() {
    // After the EU fence's rule, so European clients in these blocks stay in Europe (a
    // rule before it would leave them without an answer, which `check` refuses).
    let catch_all = "      - {}  ";
    let text = std::fs::read_to_string(repo("zones/live.example.net.yaml")).expect("example");
    assert!(text.contains(catch_all));
    let rule = "      - {subnets: [\"2001::/16\", \"2400::/12\"], nodes: [singapore-1]}\n";
    let dir = zone_dir(
        "census-v6",
        &text.replacen(catch_all, &format!("{rule}{catch_all}"), 1),
    );
    let server = Server::start(&dir, &repo("geo/dbip-country.mmdb"), &[]);
    let census = |family: &str| {
        let path = format!("/map?name=ingest.live.example.net&family={family}");
        let (status, body) = page_data(server.admin, &path);
        assert_eq!(status, 200, "{body}");
        let map: Value = serde_json::from_str(&body).expect("map JSON");
        map["census"].clone()
    };
    let v4 = census("4");
    assert_eq!((&v4["family"], &v4["unit"]), (&json(4), &json("address")));
    assert_eq!(
        v4["countries"]["JP"][0]["node"], "tokyo-1",
        "{}",
        v4["countries"]["JP"]
    );
    let v6 = census("6");
    assert_eq!((&v6["family"], &v6["unit"]), (&json(6), &json("/64")));
    let japan = &v6["countries"]["JP"][0];
    assert_eq!(japan["node"], "singapore-1", "{japan}");
    // Its example network is IPv6, and dig agrees with both censuses.
    let example = japan["example"].as_str().expect("an example network");
    assert!(example.contains(':'), "{example}");
    let first = |subnet: &str| {
        let text = dig_text(
            &server,
            &[
                "+short",
                &format!("+subnet={subnet}"),
                "ingest.live.example.net",
            ],
        );
        node_with_address(&server, text.lines().next().unwrap_or_default())
    };
    assert_eq!(first(example), "singapore-1");
    assert_eq!(first("126.0.0.0/24"), "tokyo-1");
    // A what-if counts the family asked for.
    let (status, body) = page_data(
        server.admin,
        "/what-if?name=ingest.live.example.net&family=6&drain=singapore-1",
    );
    assert_eq!(status, 200, "{body}");
    let what_if: Value = serde_json::from_str(&body).expect("what-if JSON");
    assert_eq!(what_if["census"]["family"], 6);
    assert!(
        what_if["moves"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["from"] == "singapore-1"
                && m["countries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c[0] == "JP")),
        "{body}"
    );
    let (status, _) = page_data(server.admin, "/map?family=5");
    assert_eq!(status, 400);
}

fn json(value: impl Into<Value>) -> Value {
    value.into()
}

/// The what-if API gives the same moves as the page, and the census as a drain would.
#[test]
fn what_if_takes_nothing_live_and_agrees_with_a_real_drain() {
    let server = Server::start(&repo("zones"), &repo("geo/dbip-country.mmdb"), &[]);
    let (status, body) = page_data(server.admin, "/what-if?drain=frankfurt-1");
    assert_eq!(status, 200, "{body}");
    let what_if: Value = serde_json::from_str(&body).expect("what-if JSON");
    let (_, body) = page_data(server.admin, "/map");
    let live: Value = serde_json::from_str(&body).expect("map JSON");
    assert_eq!(live["census"]["countries"]["DE"][0]["node"], "frankfurt-1");
    let moved_from: Vec<&str> = what_if["moves"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["from"].as_str())
        .collect();
    assert!(
        !moved_from.is_empty() && moved_from.iter().all(|f| *f == "frankfurt-1"),
        "{moved_from:?}"
    );
    let (status, _) = http(
        server.admin,
        "POST",
        "/nodes/live.example.net/frankfurt-1/drain",
        None,
    );
    assert_eq!(status, 200);
    eventually(Duration::from_secs(10), "the drained map", || {
        let (_, body) = page_data(server.admin, "/map");
        let drained: Value = serde_json::from_str(&body).expect("map JSON");
        if drained["census"]["countries"] == what_if["census"]["countries"] {
            Ok(())
        } else {
            Err(format!("DE: {}", drained["census"]["countries"]["DE"]))
        }
    });
    let (status, body) = page_data(server.admin, "/what-if?down=nowhere-9");
    assert_eq!(status, 404, "{body}");
}

/// With a city database, the census colours the map cell by cell: Tokyo's square degree
/// goes to Tokyo, Osaka's (the same country) to Osaka; the page draws them. A page that
/// holds the current census is not sent it again.
#[test]
fn with_a_city_database_the_places_inside_a_country_are_coloured() {
    let dir = zone_dir(
        "status-page-city",
        "zone: city.example\nsoa: {primary: ns1.city.example., contact: h.city.example.}\nns: [ns1.city.example.]\n\
         nodes:\n\
         \x20 tokyo: {geo: AS-JP, location: [35.68, 139.69], addresses: [192.0.2.1], check: {type: none}}\n\
         \x20 osaka: {geo: AS-JP, location: [34.69, 135.50], addresses: [192.0.2.2], check: {type: none}}\n\
         steer:\n  ingest: {answers: 1}\n",
    );
    let server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let (status, body) = page_data(server.admin, "/map?name=ingest.city.example");
    assert_eq!(status, 200, "{body}");
    let map: Value = serde_json::from_str(&body).expect("map JSON");
    let cell = |lat: i64, lon: i64| {
        map["census"]["cells"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["lat"] == lat && c["lon"] == lon)
            .map(|c| c["node"].clone())
    };
    assert_eq!(cell(35, 139), Some("tokyo".into()), "{}", map["census"]);
    assert_eq!(cell(34, 135), Some("osaka".into()), "{}", map["census"]);
    // Held and current: left out.
    let id = map["census_id"].as_str().expect("an id");
    let (_, body) = page_data(
        server.admin,
        &format!("/map?name=ingest.city.example&have={id}"),
    );
    let again: Value = serde_json::from_str(&body).expect("map JSON");
    assert_eq!(again["census_id"], id);
    assert!(again.get("census").is_none(), "{again}");

    let browser = Browser::start(1200, 900);
    browser.goto(&format!(
        "http://{}/?name=ingest.city.example",
        server.admin
    ));
    eventually(Duration::from_secs(15), "cells drawn", || {
        let drawn = browser.eval(
            "return [...document.querySelectorAll('#cells rect')].map(r => r.dataset.node + ' ' + r.getAttribute('fill'));",
        );
        let legend = browser.eval(
            "return Object.fromEntries([...document.querySelectorAll('#legend li')].map(l => [l.dataset.node, l.dataset.color]));",
        );
        let drawn: Vec<String> = drawn
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let want = |node: &str| format!("{node} {}", legend[node].as_str().unwrap_or("?"));
        if drawn.contains(&want("tokyo")) && drawn.contains(&want("osaka")) {
            Ok(())
        } else {
            Err(format!("{drawn:?} {legend}"))
        }
    });
    // Polls keep the census they hold.
    let updates = |b: &Browser| {
        b.eval("return window.geosteerUpdates;")
            .as_u64()
            .unwrap_or(0)
    };
    let seen = updates(&browser);
    eventually(Duration::from_secs(10), "two more polls", || {
        if updates(&browser) >= seen + 2 {
            Ok(())
        } else {
            Err("waiting".into())
        }
    });
    let still = browser.eval("return document.querySelectorAll('#cells rect').length;");
    assert!(still.as_u64().unwrap_or(0) >= 2, "{still}");
}

/// Map and what-if work is bounded: a burst of 40 different what-ifs at once gets some
/// 429s (with Retry-After) rather than 40 walks of the database at once, the rest are
/// answered, and DNS keeps answering through the burst.
#[test]
fn a_burst_of_what_ifs_is_bounded_and_dns_keeps_answering() {
    let server = Server::start(&repo("zones"), &repo("geo/dbip-country.mmdb"), &[]);
    let nodes = [
        "us-west-1",
        "us-east-1",
        "dallas-b",
        "sao-paulo-1",
        "london-1",
        "frankfurt-1",
        "amsterdam-b",
        "dubai-1",
        "riyadh-1",
        "johannesburg-1",
        "mumbai-1",
        "singapore-1",
    ];
    let admin = server.admin;
    let burst: Vec<std::thread::JoinHandle<(u16, String)>> = (0..40)
        .map(|i| {
            let path = format!(
                "/what-if?drain={},{}",
                nodes[i % nodes.len()],
                nodes[(i / nodes.len() + 1 + i) % nodes.len()]
            );
            std::thread::spawn(move || {
                admin_raw(admin, &format!("GET {path} HTTP/1.1\r\nHost: {admin}"))
            })
        })
        .collect();
    // DNS through the burst.
    for _ in 0..50 {
        let reply = udp_from(
            &server,
            from("127.1.0.5"),
            &q("ingest.live.example.net.", hickory_proto::rr::RecordType::A),
        );
        assert!(!a_records(&reply).is_empty());
    }
    let results: Vec<(u16, String)> = burst
        .into_iter()
        .map(|t| t.join().expect("joined"))
        .collect();
    let busy: Vec<&String> = results
        .iter()
        .filter(|(s, _)| *s == 429)
        .map(|(_, r)| r)
        .collect();
    let answered = results.iter().filter(|(s, _)| *s == 200).count();
    eprintln!(
        "40 what-ifs at once: {answered} answered, {} told to retry",
        busy.len()
    );
    assert!(!busy.is_empty(), "no what-if was turned away");
    assert!(
        busy.iter()
            .all(|r| r.to_ascii_lowercase().contains("retry-after: 1"))
    );
    assert!(answered >= 1, "none answered");
    assert_eq!(
        answered + busy.len(),
        40,
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
}

/// With a token, the page opened as `http://user:token@host/` works: it fetches its data
/// from its origin (a browser refuses addresses with credentials in them), and the login
/// the browser holds reads the map.
#[test]
fn the_page_works_opened_with_credentials_in_its_address() {
    let server = Server::start_with_env(
        &repo("zones"),
        &repo("geo/dbip-country.mmdb"),
        &[],
        &[("GEOSTEER_ADMIN_TOKEN", "s3cret")],
    );
    let browser = Browser::start(1200, 900);
    browser.goto(&format!(
        "http://operator:s3cret@{}/?name=ingest.live.example.net",
        server.admin
    ));
    eventually(Duration::from_secs(15), "Japan coloured", || {
        let (node, fill, legend) = japan_on_page(&browser);
        if !node.is_empty() && !fill.is_empty() && fill == legend {
            Ok(())
        } else {
            Err(format!(
                "Japan: {node} {fill} (legend {legend}); status: {}",
                browser.eval("return document.querySelector('#status').textContent;")
            ))
        }
    });
}

/// A page on another site cannot drain a node through the operator's browser, even once
/// the operator has logged in to the status page (the browser then sends that login with
/// every request to the admin address): its form POST is refused and the node stays in.
#[test]
fn a_page_on_another_site_cannot_drain_a_node_through_the_browser() {
    use std::io::{Read, Write};
    let server = Server::start_with_env(
        &repo("zones"),
        &repo("geo/dbip-country.mmdb"),
        &[],
        &[("GEOSTEER_ADMIN_TOKEN", "s3cret")],
    );
    // The other site: a page that posts a form to the admin interface as soon as it loads.
    let evil = std::net::TcpListener::bind("127.0.0.2:0").expect("bind the other site");
    let site = evil.local_addr().expect("address");
    let target = format!(
        "http://{}/nodes/live.example.net/tokyo-1/drain",
        server.admin
    );
    let page = format!(
        "<!doctype html><title>cats</title><form method=post action='{target}'>\
         <input name=x value=1></form><script>document.forms[0].submit()</script>"
    );
    evil.set_nonblocking(true).expect("non-blocking");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    let serving = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while served < 5
            && std::time::Instant::now() < deadline
            && !stopped.load(std::sync::atomic::Ordering::Relaxed)
        {
            let Ok((mut stream, _)) = evil.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            served += 1;
        }
    });
    let browser = Browser::start(1000, 800);
    // The operator logs in to the status page.
    browser.goto(&format!("http://operator:s3cret@{}/", server.admin));
    eventually(Duration::from_secs(15), "the status page loaded", || {
        let title = browser.eval("return document.title;");
        if title.as_str().unwrap_or_default().contains("geosteer") {
            Ok(())
        } else {
            Err(title.to_string())
        }
    });
    // Then visits the other site, whose form posts to the admin interface.
    browser.goto(&format!("http://{site}/"));
    eventually(
        Duration::from_secs(15),
        "the form posted and refused",
        || {
            let body = browser.eval("return document.body ? document.body.innerText : '';");
            let text = body.as_str().unwrap_or_default();
            if text.contains("refused") || text.contains("Basic authentication") {
                Ok(())
            } else {
                Err(format!(
                    "{} at {}",
                    text,
                    browser.eval("return location.href;")
                ))
            }
        },
    );
    let (_, nodes) = http(server.admin, "GET", "/nodes", Some("s3cret"));
    let nodes: Value = serde_json::from_str(&nodes).expect("JSON");
    let tokyo = (nodes.as_array().into_iter().flatten())
        .find(|n| n["node"] == "tokyo-1")
        .expect("tokyo-1")
        .clone();
    assert_eq!(tokyo["override"], Value::Null, "{tokyo}");
    drop(browser);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = serving.join();
}

/// Thirty nodes, eight of them in one city: every node its own colour, no two markers on
/// top of each other (a crowd is spread, with names), state shown by a mark that is never a
/// colour, what-if badges that say the previewed state, a fleet panel, and drain / obey from
/// the page through the interface's write protection.
#[test]
fn thirty_nodes_stay_legible_and_can_be_drained_from_the_page() {
    let mut policy = String::from(
        "zone: thirty.example\nsoa: {primary: ns1.thirty.example., contact: h.thirty.example.}\nns: [ns1.thirty.example.]\ncheck: {type: none}\nnodes:\n",
    );
    let sites: [(&str, &str, f64, f64); 6] = [
        ("fra", "EU-DE", 50.11, 8.68),
        ("ams", "EU-NL", 52.37, 4.90),
        ("tok", "AS-JP", 35.68, 139.69),
        ("nyc", "NA-US", 40.71, -74.0),
        ("sao", "SA-BR", -23.55, -46.63),
        ("syd", "OC-AU", -33.87, 151.21),
    ];
    let mut n = 0;
    for (i, (site, geo, lat, lon)) in sites.iter().enumerate() {
        let count = if i == 0 {
            8
        } else {
            22 / 5 + usize::from(i <= 22 % 5)
        };
        for k in 0..count {
            n += 1;
            policy += &format!(
                "  {site}-{k}: {{geo: {geo}, location: [{lat}, {}], addresses: [192.0.2.{n}]}}\n",
                lon + k as f64 * 0.05
            );
        }
    }
    assert_eq!(n, 30);
    policy += "steer:\n  ingest: {answers: 1}\n";
    let server = Server::start(
        &zone_dir("thirty-nodes", &policy),
        &repo("geo/dbip-country.mmdb"),
        &[],
    );
    let browser = Browser::start(1600, 1100);
    browser.goto(&format!(
        "http://{}/?name=ingest.thirty.example.",
        server.admin
    ));
    eventually(Duration::from_secs(20), "30 markers", || {
        let count = browser.eval("return document.querySelectorAll('#markers circle').length;");
        if count == 30 {
            Ok(())
        } else {
            Err(format!("{count}"))
        }
    });
    // Every node its own colour, the marker filled with it.
    let colours = browser
        .eval("return [...document.querySelectorAll('#legend li')].map(l => l.dataset.color);");
    let colours: Vec<String> = serde_json::from_value(colours).expect("colours");
    let distinct: std::collections::HashSet<&String> = colours.iter().collect();
    assert_eq!((colours.len(), distinct.len()), (30, 30), "{colours:?}");
    let fills = browser.eval(
        "return [...document.querySelectorAll('#markers circle')].every(c => \
           c.getAttribute('fill') === document.querySelector(`#legend li[data-node=\"${c.dataset.node}\"]`).dataset.color);",
    );
    assert_eq!(fills, true, "markers are filled with their node's colour");
    // No two markers on top of each other; the crowd in Frankfurt is labelled.
    let closest = browser.eval(
        "const p = [...document.querySelectorAll('#markers circle')].map(c => [+c.dataset.x, +c.dataset.y]);\
         let best = 1e9; for (let i = 0; i < p.length; i++) for (let j = i + 1; j < p.length; j++)\
           best = Math.min(best, Math.hypot(p[i][0] - p[j][0], p[i][1] - p[j][1]));\
         return best;",
    );
    assert!(
        closest.as_f64().is_some_and(|d| d >= 4.0),
        "markers overlap: {closest}"
    );
    let labels = browser.eval(
        "return [...document.querySelectorAll('#markers text.label')].map(t => t.textContent);",
    );
    assert!(labels.to_string().contains("fra-3"), "{labels}");
    // The fleet panel says there is none.
    eventually(Duration::from_secs(10), "the fleet panel", || {
        let text = browser.eval("return document.querySelector('#fleet-body').textContent;");
        if text.as_str().is_some_and(|t| t.contains("not in a fleet")) {
            Ok(())
        } else {
            Err(text.to_string())
        }
    });
    browser.screenshot(&repo("target/screenshots").join("status-page-30-nodes.png"));

    // Drain from the page (the reason asked for, answered here): the node's marker keeps its
    // colour and gets the drained mark; the audit trail names the reason.
    browser.eval(
        "window.prompt = () => 'page test'; \
         document.querySelector('button[data-act=\"drain\"][data-node=\"tok-0\"]').click(); return null;",
    );
    eventually(
        Duration::from_secs(10),
        "tok-0 drained from the page",
        || {
            let state = browser.eval(
            "const c = document.querySelector('#markers circle[data-node=\"tok-0\"]'); \
             return [c.dataset.state, c.getAttribute('fill'), !!document.querySelector('[data-glyph=\"tok-0\"]')];",
        );
            if state[0] == "drained" && state[2] == true {
                Ok(())
            } else {
                Err(state.to_string())
            }
        },
    );
    let (_, nodes) = http(server.admin, "GET", "/nodes", None);
    assert!(
        nodes.contains(r#""override_by":{"by":"local","reason":"page test"}"#),
        "{nodes}"
    );
    browser.screenshot(&repo("target/screenshots").join("status-page-30-nodes-drained.png"));
    browser.eval("document.querySelector('button[data-act=\"obey\"][data-node=\"tok-0\"]').click(); return null;");
    eventually(Duration::from_secs(10), "tok-0 back", || {
        let state = browser.eval(
            "return document.querySelector('#markers circle[data-node=\"tok-0\"]').dataset.state;",
        );
        if state == "up" {
            Ok(())
        } else {
            Err(state.to_string())
        }
    });
    // A what-if: the badge says the previewed state.
    browser.eval(
        "document.querySelector('#nodes select[data-node=\"syd-0\"]').value = 'down';\
         document.querySelector('#preview').click(); return null;",
    );
    eventually(Duration::from_secs(15), "the what-if badge", || {
        let badge = browser.eval(
            "return document.querySelector('#nodes tr[data-node=\"syd-0\"] .state').textContent;",
        );
        if badge == "down (what-if)" {
            Ok(())
        } else {
            Err(badge.to_string())
        }
    });
}
