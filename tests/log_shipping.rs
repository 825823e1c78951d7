//! The log shipper configurations of deploy/logging/. Debian's rsyslogd, configured by the
//! shipped rsyslog.conf, follows the log file of a real corecast (`log.format = "ecs"`) and
//! delivers every line, with no parsing rule, unchanged: to its local JSON file and in the
//! Elasticsearch bulk requests it sends to a stand-in on 127.0.0.1. Vector's, Fluent Bit's
//! and Filebeat's files, whose programs are not Debian packages, are checked for syntax and
//! for the names that make them decode the lines as JSON.
//!
//! The rsyslog test needs the Debian packages rsyslog and rsyslog-elasticsearch: it is
//! skipped with a notice without them, and fails instead under CORECAST_REQUIRE_TOOLS=1.

mod common;

use common::{have_tool, wait_exit, wait_live_at, wait_until, FlvViewer, Killed};
use corecast_testkit::client::Publisher;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The directory of the shipped files.
fn logging_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/logging")
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(logging_dir().join(name))
        .unwrap_or_else(|e| panic!("deploy/logging/{name}: {e}"))
}

/// Where every shipped file reads corecast's log.
const LOG_FILE: &str = "/var/log/corecast/corecast.log";
/// The data stream every shipped file writes to.
const DATA_STREAM: &str = "logs-corecast-default";

/// Bulk request bodies received by [`FakeElasticsearch`], in order.
type Bulks = Arc<Mutex<Vec<String>>>;

/// A stand-in for Elasticsearch on 127.0.0.1: it answers the health check of rsyslog's
/// omelasticsearch and acknowledges every item of a `_bulk` request as created, keeping the
/// bodies. It stands in for the wire protocol only: no mapping, no data stream.
struct FakeElasticsearch {
    addr: SocketAddr,
    bulks: Bulks,
}

impl FakeElasticsearch {
    fn start() -> FakeElasticsearch {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Elasticsearch stand-in");
        let addr = listener.local_addr().expect("its address");
        let bulks = Bulks::default();
        let kept = bulks.clone();
        // Accepts until the test binary exits; each connection (curl keeps one open) on a
        // thread of its own.
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let bulks = kept.clone();
                std::thread::spawn(move || answer(stream, &bulks));
            }
        });
        FakeElasticsearch { addr, bulks }
    }

    /// The (action, document) pairs of every bulk request so far, in order.
    fn items(&self) -> Vec<(Value, Value)> {
        let bulks = self.bulks.lock().expect("bulks lock");
        let lines: Vec<Value> = bulks
            .iter()
            .flat_map(|body| body.lines().filter(|l| !l.trim().is_empty()))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bulk line {l}: {e}")))
            .collect();
        assert!(
            lines.len().is_multiple_of(2),
            "odd number of bulk lines: {lines:?}"
        );
        lines
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect()
    }
}

/// Answers the HTTP/1.1 requests of one connection until the client closes it.
fn answer(stream: TcpStream, bulks: &Bulks) {
    // A client that stops mid-request does not keep this thread for ever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (mut length, mut expect_continue) = (0usize, false);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "expect" => expect_continue = value.trim().eq_ignore_ascii_case("100-continue"),
                _ => {}
            }
        }
        // curl asks before sending a large body.
        if expect_continue && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
            return;
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        let (content_type, reply) = if request_line.starts_with("POST ")
            && request_line.contains("/_bulk")
        {
            let items = body.lines().filter(|l| !l.trim().is_empty()).count() / 2;
            bulks.lock().expect("bulks lock").push(body);
            let created =
                vec![serde_json::json!({"create": {"_index": DATA_STREAM, "status": 201}}); items];
            let reply = serde_json::json!({"took": 1, "errors": false, "items": created});
            ("application/json", reply.to_string())
        } else {
            // GET /_cat/health: omelasticsearch asks it after a failed request, and only
            // its status counts.
            ("text/plain", "green\n".to_string())
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// The complete lines of `path` (none if it does not exist yet).
fn lines_of(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| l.trim_end_matches('\n').to_string())
        .collect()
}

/// Sends `signal` to `child`.
fn signal(child: &Killed, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.0.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) with the pid of our own child, which has not been waited for.
    assert_eq!(
        unsafe { libc::kill(pid, signal) },
        0,
        "kill({pid}, {signal})"
    );
}

/// The shipped rsyslog.conf for this test: `/var/log/corecast/` becomes `dir`, and the
/// Elasticsearch action goes to the stand-in. Nothing else changes; each replaced text must
/// be there, so that the file and the test cannot drift apart unnoticed.
fn rsyslog_conf_for(dir: &Path, elasticsearch: SocketAddr) -> String {
    let text = shipped("rsyslog.conf");
    let replacements = [
        (
            "/var/log/corecast/".to_string(),
            format!("{}/", dir.display()),
        ),
        (
            "server=\"localhost\" serverport=\"9200\"".to_string(),
            format!(
                "server=\"{}\" serverport=\"{}\"",
                elasticsearch.ip(),
                elasticsearch.port()
            ),
        ),
    ];
    replacements.iter().fold(text, |text, (from, to)| {
        assert!(
            text.contains(from.as_str()),
            "deploy/logging/rsyslog.conf no longer contains {from:?}"
        );
        text.replace(from.as_str(), to)
    })
}

/// Waits up to 10 s for corecast's "corecast serving" line in its log; its RTMP and HTTP
/// addresses.
fn serving_addresses(log: &Path, corecast: &mut Killed, stderr: &Path) -> (SocketAddr, SocketAddr) {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = lines_of(log).iter().find_map(|line| {
            let value: Value = serde_json::from_str(line).ok()?;
            if value["message"] != "corecast serving" {
                return None;
            }
            let addr = |key: &str| value[key].as_str()?.parse::<SocketAddr>().ok();
            Some((addr("corecast.rtmp")?, addr("corecast.http")?))
        });
        found.is_some() || !corecast.is_running()
    });
    found.unwrap_or_else(|| {
        panic!(
            "corecast did not serve; its standard error:\n{}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        )
    })
}

#[test]
fn rsyslog_ships_every_ecs_line_unchanged_without_a_parsing_rule() {
    if !have_tool("rsyslogd") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("corecast-log-shipping-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rsyslog")).expect("create the test directory");
    let log = dir.join("corecast.log");
    std::fs::File::create(&log).expect("create the log file");

    // rsyslogd: the shipped file, included by a main configuration that only names the
    // work directory (imfile's read positions, the Elasticsearch action's queue). No
    // imuxsock or imklog: the test's rsyslogd touches no system socket.
    let elasticsearch = FakeElasticsearch::start();
    let shipped_conf = dir.join("corecast-rsyslog.conf");
    std::fs::write(&shipped_conf, rsyslog_conf_for(&dir, elasticsearch.addr)).unwrap();
    let main_conf = dir.join("rsyslogd.conf");
    std::fs::write(
        &main_conf,
        format!(
            "global(workDirectory=\"{}\")\ninclude(file=\"{}\")\n",
            dir.join("rsyslog").display(),
            shipped_conf.display()
        ),
    )
    .unwrap();
    let check = Command::new("rsyslogd")
        .arg("-N1")
        .arg("-f")
        .arg(&main_conf)
        .output()
        .expect("run rsyslogd -N1");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    if !check.status.success() && said.contains("could not load module") {
        // rsyslogd without rsyslog-elasticsearch (omelasticsearch).
        if std::env::var("CORECAST_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("rsyslog-elasticsearch is required (CORECAST_REQUIRE_TOOLS=1): {said}");
        }
        eprintln!("NOTICE: an rsyslog module is missing (install rsyslog-elasticsearch); skipping this test (set CORECAST_REQUIRE_TOOLS=1 to fail instead):\n{said}");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    assert!(
        check.status.success(),
        "rsyslogd -N1 refuses the configuration:\n{said}"
    );
    let rsyslogd_err = dir.join("rsyslogd.err");
    let mut rsyslogd = Killed(
        Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&main_conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&rsyslogd_err).unwrap())
            .spawn()
            .expect("start rsyslogd"),
    );

    // corecast, its standard output appended to the log file that rsyslogd follows. Debug
    // level: the connection lines, which carry client.ip and network.protocol.
    let config = dir.join("corecast.toml");
    std::fs::write(
        &config,
        "[server]\nshards = 2\nrtmp_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"\"\n[log]\nformat = \"ecs\"\nlevel = \"debug\"\n",
    )
    .unwrap();
    let corecast_err = dir.join("corecast.err");
    let stdout = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open the log file");
    let mut corecast = Killed(
        Command::new(env!("CARGO_BIN_EXE_corecast"))
            .arg("--config")
            .arg(&config)
            // The configuration's level, whatever the caller's environment says.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(std::fs::File::create(&corecast_err).unwrap())
            .spawn()
            .expect("start corecast"),
    );
    let (rtmp, http) = serving_addresses(&log, &mut corecast, &corecast_err);

    // A publisher (the fixture clip at 3x), viewers over HTTP-FLV, then a clean stop.
    let publisher = Publisher::connect(rtmp, "live", "shipped", Duration::from_secs(5))
        .expect("publish live/shipped");
    let publishing = common::replay_in_background(publisher, 1, 3.0);
    wait_live_at(http, "/live/shipped.flv");
    let mut viewer = FlvViewer::open(http, "/live/shipped.flv");
    assert_eq!(viewer.status, 200);
    assert!(viewer.next_tag().is_some(), "the viewer got a tag");
    drop(viewer);
    publishing.join().expect("the publisher finished");
    signal(&corecast, libc::SIGTERM);
    let status = wait_exit(&mut corecast.0, Duration::from_secs(10)).expect("corecast stops");
    assert!(status.success(), "corecast exited with {status}");

    // What corecast wrote: complete lines, each a JSON object.
    let written: Vec<Value> = lines_of(&log)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("corecast wrote {l}: {e}")))
        .collect();
    assert!(written.len() >= 10, "only {} log lines", written.len());
    assert!(
        written
            .iter()
            .any(|v| v["client.ip"] == "127.0.0.1" && v["network.protocol"].is_string()),
        "no connection line with client.ip and network.protocol"
    );

    // rsyslog: every line in the local copy and in the bulk requests.
    let copy = dir.join("corecast.ecs.json");
    let arrived = wait_until(Duration::from_secs(20), || {
        lines_of(&copy).len() >= written.len() && elasticsearch.items().len() >= written.len()
    });
    signal(&rsyslogd, libc::SIGTERM);
    let stopped = wait_exit(&mut rsyslogd.0, Duration::from_secs(10));
    let rsyslog_said = std::fs::read_to_string(&rsyslogd_err).unwrap_or_default();
    assert!(
        arrived,
        "{} lines written, {} in the copy, {} sent to Elasticsearch; rsyslogd said:\n{rsyslog_said}",
        written.len(),
        lines_of(&copy).len(),
        elasticsearch.items().len()
    );
    assert!(stopped.is_some(), "rsyslogd did not stop on SIGTERM");

    let copied: Vec<Value> = lines_of(&copy)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("rsyslog wrote {l}: {e}")))
        .collect();
    let items = elasticsearch.items();
    assert_eq!(copied.len(), written.len(), "records in the copy");
    assert_eq!(
        items.len(),
        written.len(),
        "documents sent to Elasticsearch"
    );
    for (i, line) in written.iter().enumerate() {
        for key in [
            "@timestamp",
            "log.level",
            "message",
            "ecs.version",
            "service.name",
        ] {
            assert!(line[key].is_string(), "line {i} has no {key}: {line}");
        }
        // The same object: every field, under its own name, with its value and type.
        assert_eq!(&copied[i], line, "line {i} in the copy");
        let (action, document) = &items[i];
        assert_eq!(
            action,
            &serde_json::json!({"create": {"_index": DATA_STREAM}}),
            "bulk action of line {i}"
        );
        assert_eq!(document, line, "line {i} sent to Elasticsearch");
    }
    assert!(
        !dir.join("corecast.unparsed.log").exists(),
        "rsyslog found a line that is not JSON"
    );
    eprintln!(
        "{} lines shipped by rsyslog ({} bulk requests)",
        written.len(),
        elasticsearch.bulks.lock().expect("bulks lock").len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `[SECTION]`s of a Fluent Bit classic configuration, each with its `Key Value` pairs
/// (keys in lower case: Fluent Bit ignores their case). Panics on a line that is neither.
fn fluent_bit_sections(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.to_string(), Vec::new()));
            continue;
        }
        let (key, value) = line
            .split_once(char::is_whitespace)
            .unwrap_or_else(|| panic!("fluent-bit.conf:{}: no value: {line}", n + 1));
        let (_, entries) = sections
            .last_mut()
            .unwrap_or_else(|| panic!("fluent-bit.conf:{}: outside a section", n + 1));
        entries.push((key.to_ascii_lowercase(), value.trim().to_string()));
    }
    sections
}

#[test]
fn vector_fluent_bit_and_filebeat_decode_the_lines_as_json() {
    // Vector: TOML; the file source, a remap that parses the line as JSON, and the
    // Elasticsearch sink in data stream mode on its output.
    let vector: toml::Table = shipped("vector.toml").parse().expect("vector.toml is TOML");
    let source = &vector["sources"]["corecast_file"];
    assert_eq!(source["type"].as_str(), Some("file"));
    assert_eq!(source["include"][0].as_str(), Some(LOG_FILE));
    let remap = &vector["transforms"]["corecast_ecs"];
    assert_eq!(remap["type"].as_str(), Some("remap"));
    assert_eq!(remap["inputs"][0].as_str(), Some("corecast_file"));
    let program = remap["source"].as_str().expect("a VRL program");
    assert_eq!(
        program.trim(),
        ". = object!(parse_json!(string!(.message)))",
        "the remap only decodes the line"
    );
    let sink = &vector["sinks"]["elasticsearch"];
    assert_eq!(sink["type"].as_str(), Some("elasticsearch"));
    assert_eq!(sink["inputs"][0].as_str(), Some("corecast_ecs"));
    assert_eq!(sink["mode"].as_str(), Some("data_stream"));
    let stream = &sink["data_stream"];
    let name = ["type", "dataset", "namespace"].map(|k| stream[k].as_str().unwrap_or("?"));
    assert_eq!(name.join("-"), DATA_STREAM);

    // Fluent Bit: tail with the stock json parser, es output with Suppress_Type_Name.
    let sections = fluent_bit_sections(&shipped("fluent-bit.conf"));
    let get = |section: &str, key: &str| -> Option<String> {
        sections
            .iter()
            .find(|(name, _)| name == section)
            .and_then(|(_, entries)| entries.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("SERVICE", "parsers_file").as_deref(),
        Some("parsers.conf")
    );
    assert_eq!(get("INPUT", "name").as_deref(), Some("tail"));
    assert_eq!(get("INPUT", "path").as_deref(), Some(LOG_FILE));
    assert_eq!(get("INPUT", "parser").as_deref(), Some("json"));
    assert_eq!(get("OUTPUT", "name").as_deref(), Some("es"));
    assert_eq!(get("OUTPUT", "match"), get("INPUT", "tag"));
    assert_eq!(get("OUTPUT", "index").as_deref(), Some(DATA_STREAM));
    assert_eq!(get("OUTPUT", "write_operation").as_deref(), Some("create"));
    assert_eq!(get("OUTPUT", "suppress_type_name").as_deref(), Some("On"));
    let time_key = get("OUTPUT", "time_key").expect("Time_Key set");
    assert_ne!(
        time_key, "@timestamp",
        "a second @timestamp would be refused"
    );

    // Filebeat: YAML; filestream with the ndjson parser at the top of the event.
    let docs = yaml_rust2::YamlLoader::load_from_str(&shipped("filebeat.yml"))
        .expect("filebeat.yml is YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    let filebeat = &docs[0];
    let input = &filebeat["filebeat.inputs"][0];
    assert_eq!(input["type"].as_str(), Some("filestream"));
    assert!(input["id"].as_str().is_some(), "filestream needs an id");
    assert_eq!(input["paths"][0].as_str(), Some(LOG_FILE));
    let ndjson = &input["parsers"][0]["ndjson"];
    assert_eq!(ndjson["target"].as_str(), Some(""));
    assert_eq!(ndjson["overwrite_keys"].as_bool(), Some(true));
    assert_eq!(ndjson["expand_keys"].as_bool(), Some(true));
    let output = &filebeat["output.elasticsearch"];
    assert_eq!(output["index"].as_str(), Some(DATA_STREAM));
    let pattern = filebeat["setup.template.pattern"]
        .as_str()
        .expect("setup.template.pattern");
    assert!(DATA_STREAM.starts_with(pattern.trim_end_matches('*')));
    assert!(filebeat["setup.template.name"].as_str().is_some());

    // rsyslog (run by the other test) reads the same file into the same data stream.
    let rsyslog = shipped("rsyslog.conf");
    assert!(rsyslog.contains(&format!("file=\"{LOG_FILE}\"")));
    assert!(rsyslog.contains(&format!("searchIndex=\"{DATA_STREAM}\"")));
}
