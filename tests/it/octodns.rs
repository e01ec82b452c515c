//! `geosteer import octodns`: an octoDNS zone file with a dynamic record becomes a policy
//! that `geosteer check` accepts and that answers each region from its pool; what geosteer
//! cannot express is refused, naming the record.

use std::process::Command;

use hickory_proto::rr::RecordType::{A, MX, TXT};

use crate::support::*;

fn import(file: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(geosteer_binary())
        .args(["import", "octodns"])
        .arg(file)
        .args(["--zone", "live.example.net"])
        .args([
            "--nameservers",
            "ns1.live.example.net.,ns2.live.example.net.",
        ])
        .args(extra)
        .output()
        .expect("geosteer import runs")
}

#[test]
fn an_octodns_zone_becomes_a_policy_that_answers_by_pool() {
    let output = import(&repo("tests/fixtures/octodns/live.example.net.yaml"), &[]);
    assert!(output.status.success(), "{output:?}");
    let policy = String::from_utf8(output.stdout).expect("utf-8");
    // Choices are marked for the operator; the health check settings carried over.
    assert!(
        policy.contains("# choice: located at DE's reference point"),
        "{policy}"
    );
    assert!(
        policy.contains("check: {type: tcp, port: 1935}"),
        "{policy}"
    );
    assert!(
        policy.contains("eu: {nodes: [eu-1, eu-2], fallback: us}"),
        "{policy}"
    );
    assert!(policy.contains("weight: 2"), "{policy}");
    let dir = zone_dir("octodns-import", &policy);
    let checked = Command::new(geosteer_binary())
        .arg("check")
        .arg(&dir)
        .arg("--geo")
        .arg(repo("tests/fixtures/geo-city.mmdb"))
        .output()
        .expect("geosteer check runs");
    assert!(checked.status.success(), "{checked:?}\n{policy}");
    let server = Server::start(&dir, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let ask = |subnet: &str| {
        let mut got = a_records(&udp(
            &server,
            &q("ingest.live.example.net.", A).ecs(subnet, 24),
        ));
        got.sort();
        got
    };
    let from_pool = |got: Vec<String>, pool: &[&str], what: &str| {
        assert!(
            got.len() == 1 && pool.contains(&got[0].as_str()),
            "{what}: {got:?} not one of {pool:?}"
        );
    };
    from_pool(
        ask("127.3.0.0"),
        &["198.51.100.31", "198.51.100.32"],
        "Germany: pool eu",
    );
    from_pool(ask("127.1.0.0"), &["198.51.100.81"], "Japan: pool jp");
    from_pool(
        ask("127.4.0.0"),
        &["198.51.100.11", "198.51.100.12"],
        "the US: catch-all pool us",
    );
    // Weights carry over: across many German networks, eu-1 (weight 2) is drawn about
    // twice as often as eu-2.
    let heavy = (0..90)
        .filter(|i| ask(&format!("127.3.{i}.0")) == ["198.51.100.31"])
        .count();
    assert!(
        (52..=75).contains(&heavy),
        "{heavy} of 90 networks drew the weight-2 node"
    );
    // Static records came over, TXT unescaped.
    let txt = udp(&server, &q("live.example.net.", TXT));
    let texts: Vec<String> = txt.answers.iter().map(|r| r.data.to_string()).collect();
    assert!(texts.iter().any(|t| t.contains("a;b")), "{texts:?}");
    assert_eq!(udp(&server, &q("live.example.net.", MX)).answers.len(), 2);
}

#[test]
fn what_geosteer_cannot_express_is_refused_by_name() {
    let file = std::env::temp_dir().join(format!("octodns-refused-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        "ptr: {type: PTR, value: host.example.}\n\
         alias:\n  type: CNAME\n  value: x.example.\n  dynamic: {pools: {a: {values: [{value: x.example.}]}}, rules: [{pool: a}]}\n\
         both:\n  type: A\n  value: 192.0.2.1\n  dynamic:\n    pools: {a: {values: [{value: 192.0.2.2}]}}\n    rules: [{geos: [EU], subnets: [10.0.0.0/8], pool: a}, {pool: a}]\n",
    )
    .expect("write");
    let output = import(&file, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("record 'ptr' (PTR): type PTR is not served"),
        "{stderr}"
    );
    assert!(
        stderr.contains("record 'alias' (CNAME): dynamic CNAME records cannot be steered"),
        "{stderr}"
    );
    assert!(
        stderr.contains("record 'both' (A): rule 1: both geos and subnets"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing printed on failure");
    let _ = std::fs::remove_file(&file);
}

/// Runs a command, returning (success, stdout + stderr).
fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("the command runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// A virtual environment with octoDNS from PyPI and this repository's provider
/// (`integrations/octodns`, installed afresh every time).
fn octodns_venv() -> std::path::PathBuf {
    let venv = repo("target/octodns-venv");
    let pip = venv.join("bin/pip");
    if !venv.join("bin/octodns-sync").exists() {
        let (ok, text) = run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        assert!(ok, "python3 -m venv (apt-get install python3-venv): {text}");
        let (ok, text) = run(Command::new(&pip).args(["install", "--quiet", "octodns"]));
        assert!(ok, "pip install octodns: {text}");
    }
    // Built from a copy: pip builds in the source tree, and a build/ left there from an
    // earlier version would be installed instead of the code under test.
    let source = repo("target/octodns-source");
    let _ = std::fs::remove_dir_all(&source);
    std::fs::create_dir_all(source.join("octodns_geosteer")).expect("source copy");
    for file in [
        "pyproject.toml",
        "README.md",
        "octodns_geosteer/__init__.py",
    ] {
        std::fs::copy(repo("integrations/octodns").join(file), source.join(file))
            .expect("copy the package");
    }
    let (ok, text) = run(Command::new(&pip)
        .args(["install", "--quiet", "--force-reinstall", "--no-deps"])
        .arg(&source));
    assert!(ok, "pip install integrations/octodns: {text}");
    venv
}

/// The octoDNS provider: `octodns-sync --doit` from a YamlProvider zone writes a policy that
/// geosteer serves (each region from its pool), a second sync plans nothing, the policy is
/// the one `geosteer import octodns` makes from the same file (`geosteer diff` exits 0), and
/// a construct geosteer cannot express fails the plan with the record's name.
#[test]
fn the_octodns_provider_syncs_a_zone_that_geosteer_serves() {
    let venv = octodns_venv();
    let work = std::env::temp_dir().join(format!("octodns-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let (config_dir, out) = (work.join("config"), work.join("out"));
    std::fs::create_dir_all(&config_dir).expect("config dir");
    let zone_file = config_dir.join("live.example.net.yaml");
    std::fs::copy(
        repo("tests/fixtures/octodns/live.example.net.yaml"),
        &zone_file,
    )
    .expect("zone file");
    let config = work.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  config:\n    class: octodns.provider.yaml.YamlProvider\n    directory: {}\n\
             \x20 geosteer:\n    class: octodns_geosteer.GeosteerProvider\n    directory: {}\n\
             \x20   nameservers: [ns1.live.example.net., ns2.live.example.net.]\n    geosteer: {}\n\
             zones:\n  live.example.net.:\n    sources: [config]\n    targets: [geosteer]\n",
            config_dir.display(),
            out.display(),
            geosteer_binary().display()
        ),
    )
    .expect("config");
    let sync = |doit: bool| {
        let mut command = Command::new(venv.join("bin/octodns-sync"));
        command.arg("--config-file").arg(&config);
        if doit {
            command.arg("--doit");
        }
        run(&mut command)
    };
    let (ok, text) = sync(true);
    assert!(ok, "octodns-sync --doit: {text}");
    let (ok, text) = sync(false);
    assert!(
        ok && text.contains("No changes were planned"),
        "a second sync: {text}"
    );
    // octodns-dump reads the policy back as octoDNS records.
    let dump = work.join("dump");
    let (ok, text) = run(Command::new(venv.join("bin/octodns-dump"))
        .arg("--config-file")
        .arg(&config)
        .arg("--output-dir")
        .arg(&dump)
        .args(["live.example.net.", "geosteer"]));
    assert!(ok, "octodns-dump: {text}");
    let dumped = std::fs::read_to_string(dump.join("live.example.net.yaml")).expect("dump");
    assert!(
        dumped.contains("fallback: us") && dumped.contains("- AS-JP") && dumped.contains("a\\;b"),
        "{dumped}"
    );
    // What the provider wrote is what the importer makes of the same file.
    let imported = import(&zone_file, &[]);
    assert!(imported.status.success(), "{imported:?}");
    let imported_dir = work.join("imported");
    std::fs::create_dir_all(&imported_dir).expect("dir");
    std::fs::write(imported_dir.join("live.example.net.yaml"), &imported.stdout).expect("write");
    let (same, text) = run(Command::new(geosteer_binary())
        .arg("diff")
        .arg(&imported_dir)
        .arg(&out)
        .arg("--geo")
        .arg(repo("tests/fixtures/geo-city.mmdb")));
    assert!(same, "geosteer diff importer provider: {text}");
    let server = Server::start(&out, &repo("tests/fixtures/geo-city.mmdb"), &[]);
    let ask = |subnet: &str| {
        a_records(&udp(
            &server,
            &q("ingest.live.example.net.", A).ecs(subnet, 24),
        ))
    };
    assert!(["198.51.100.31", "198.51.100.32"].contains(&ask("127.3.0.0")[0].as_str()));
    assert_eq!(ask("127.1.0.0"), vec!["198.51.100.81"]);
    assert!(["198.51.100.11", "198.51.100.12"].contains(&ask("127.4.0.0")[0].as_str()));
    // With `admin`, a sync asks the instance to reload: the next answer is the new one.
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "    geosteer: ",
        &format!("    admin: http://{}\n    geosteer: ", server.admin),
    );
    std::fs::write(&config, text).expect("config");
    let zone_text = std::fs::read_to_string(&zone_file).expect("zone file");
    std::fs::write(
        &zone_file,
        zone_text.replace("198.51.100.81", "198.51.100.82"),
    )
    .expect("zone file");
    let (ok, text) = sync(true);
    assert!(ok, "octodns-sync with a reload: {text}");
    assert_eq!(
        ask("127.1.0.0"),
        vec!["198.51.100.82"],
        "reloaded when the sync returned"
    );
    // An unsupported construct: the plan fails, naming the record, and nothing is written.
    let before = std::fs::read_to_string(out.join("live.example.net.yaml")).expect("policy");
    // octoDNS wants the names in order: the PTR goes before www.
    let text = std::fs::read_to_string(&zone_file).expect("zone file");
    assert!(text.contains("\nwww:\n"), "www is the last name");
    let text = text.replace(
        "\nwww:\n",
        "\nptr:\n  type: PTR\n  value: host.example.net.\nwww:\n",
    );
    std::fs::write(&zone_file, text).expect("zone file");
    let (ok, text) = sync(true);
    assert!(!ok, "a PTR record was accepted: {text}");
    assert!(
        text.contains("record 'ptr' (PTR): type PTR is not served"),
        "the refusal names the record: {text}"
    );
    let after = std::fs::read_to_string(out.join("live.example.net.yaml")).expect("policy");
    assert_eq!(before, after, "nothing written");
    let _ = std::fs::remove_dir_all(&work);
}
