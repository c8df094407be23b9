//! Container logs as `kubectl logs` wants them, read from the files the runtime writes:
//! `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`, one line per record,
//! `<RFC3339Nano time> <stdout|stderr> <P|F> <content>`, where `P` marks a partial record continued on the next
//! line and `F` the full (last) piece.

use std::path::{Path, PathBuf};

/// Where pod logs live on the node (the kubelet's place, which log collectors know).
pub const POD_LOGS_ROOT: &str = "/var/log/pods";

pub fn pod_log_dir(namespace: &str, name: &str, uid: &str) -> PathBuf {
    Path::new(POD_LOGS_ROOT).join(format!("{namespace}_{name}_{uid}"))
}

/// One parsed line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one line (without its newline); `None` if it is not in the CRI format.
pub fn parse_line(line: &[u8]) -> Option<LogLine<'_>> {
    let mut fields = line.splitn(4, |byte| *byte == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let stream = std::str::from_utf8(fields.next()?).ok()?;
    let tag = fields.next()?;
    let content = fields.next().unwrap_or_default();
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let partial = match tag {
        b"P" => true,
        b"F" => false,
        // Tags may carry more flags after a ':' in newer runtimes; the first one is P or F.
        other => other.split(|byte| *byte == b':').next()? == b"P",
    };
    Some(LogLine { time, stream, partial, content })
}

/// What the caller asked for (the query of `pods/NAME/log`).
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub limit_bytes: Option<usize>,
}

/// A boolean query parameter as the API reads it (Go's `strconv.ParseBool`: the Python client sends `True`).
pub(crate) fn is_true(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

impl LogOptions {
    pub fn from_query(query: &str) -> Result<LogOptions, String> {
        let mut options = LogOptions::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let (key, value) = (key.as_ref(), value.into_owned());
            let number = |value: &str| value.parse::<i64>().map_err(|_| format!("{key}={value:?} is not a number"));
            match key {
                "follow" => options.follow = is_true(&value),
                "previous" => options.previous = is_true(&value),
                "timestamps" => options.timestamps = is_true(&value),
                "tailLines" => options.tail_lines = Some(number(&value)?.max(0) as usize),
                "sinceSeconds" => options.since_seconds = Some(number(&value)?),
                "sinceTime" => options.since_time = Some(value),
                "limitBytes" => options.limit_bytes = Some(number(&value)?.max(0) as usize),
                _ => {}
            }
        }
        Ok(options)
    }

    /// The earliest record time wanted, as a timestamp.
    fn since(&self) -> Option<jiff::Timestamp> {
        if let Some(seconds) = self.since_seconds {
            return jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(seconds)).ok();
        }
        self.since_time.as_deref().and_then(|time| time.parse().ok())
    }
}

/// Turns CRI log bytes into what `kubectl logs` prints: whole records joined from their pieces, each prefixed
/// with its time when `timestamps` is asked for. Keeps the bytes of an unfinished last line for the next call.
#[derive(Debug, Default)]
pub struct Renderer {
    pending: Vec<u8>,
    record: Vec<u8>,
    since: Option<jiff::Timestamp>,
    timestamps: bool,
}

impl Renderer {
    pub fn new(options: &LogOptions) -> Renderer {
        Renderer { since: options.since(), timestamps: options.timestamps, ..Default::default() }
    }

    /// Feeds bytes read from the file; returns the finished records, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        let mut records = Vec::new();
        while let Some(newline) = self.pending.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=newline).collect();
            let Some(parsed) = parse_line(&line[..line.len() - 1]) else { continue };
            if self.record.is_empty() && self.timestamps {
                self.record.extend_from_slice(parsed.time.as_bytes());
                self.record.push(b' ');
            }
            self.record.extend_from_slice(parsed.content);
            if parsed.partial {
                continue;
            }
            self.record.push(b'\n');
            let record = std::mem::take(&mut self.record);
            let wanted = match (self.since, parsed.time.parse::<jiff::Timestamp>()) {
                (Some(since), Ok(time)) => time >= since,
                _ => true,
            };
            if wanted {
                records.push(record);
            }
        }
        records
    }
}

/// The log file of a container's restart `restart`, and its restarts on disk, newest last.
pub fn log_files(container_dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(container_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let restart = name.strip_suffix(".log")?.parse().ok()?;
            Some((restart, entry.path()))
        })
        .collect();
    files.sort();
    files
}

/// The last `count` records of `records`.
pub fn tail(records: Vec<Vec<u8>>, count: Option<usize>) -> Vec<Vec<u8>> {
    match count {
        Some(count) if count < records.len() => records[records.len() - count..].to_vec(),
        _ => records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cri_lines() {
        let line = parse_line(b"2026-12-06T08:00:00.123456789Z stdout F hello world").unwrap();
        assert_eq!(line.time, "2026-12-06T08:00:00.123456789Z");
        assert_eq!(line.stream, "stdout");
        assert!(!line.partial);
        assert_eq!(line.content, b"hello world");
        assert!(parse_line(b"2026-12-06T08:00:00Z stderr P ").unwrap().partial);
        assert_eq!(parse_line(b"2026-12-06T08:00:00Z stdout F").unwrap().content, b"");
        assert_eq!(parse_line(b"garbage"), None);
        assert_eq!(parse_line(b"t middle F x"), None);
    }

    #[test]
    fn joins_partial_records_and_adds_timestamps() {
        let options = LogOptions { timestamps: true, ..Default::default() };
        let mut renderer = Renderer::new(&options);
        let records = renderer.feed(b"2026-12-06T08:00:00Z stdout P abc\n2026-12-06T08:00:01Z stdout F def\n2026-");
        assert_eq!(records, vec![b"2026-12-06T08:00:00Z abcdef\n".to_vec()]);
        let records = renderer.feed(b"12-06T08:00:02Z stderr F ghi\n");
        assert_eq!(records, vec![b"2026-12-06T08:00:02Z ghi\n".to_vec()]);
    }

    #[test]
    fn since_drops_older_records() {
        let options = LogOptions { since_time: Some("2026-12-06T08:00:01Z".into()), ..Default::default() };
        let mut renderer = Renderer::new(&options);
        let records = renderer.feed(b"2026-12-06T08:00:00Z stdout F old\n2026-12-06T08:00:02.5Z stdout F new\n");
        assert_eq!(records, vec![b"new\n".to_vec()]);
    }

    #[test]
    fn query_options() {
        let options = LogOptions::from_query("follow=true&tailLines=3&timestamps=true&limitBytes=10").unwrap();
        assert!(options.follow && options.timestamps && !options.previous);
        assert_eq!((options.tail_lines, options.limit_bytes), (Some(3), Some(10)));
        assert!(LogOptions::from_query("tailLines=x").is_err());
        let options = LogOptions::from_query("sinceTime=2026-12-06T08%3A00%3A01Z").unwrap();
        assert_eq!(options.since_time.as_deref(), Some("2026-12-06T08:00:01Z"));
        assert_eq!(tail(vec![b"a".to_vec(), b"b".to_vec()], Some(1)), vec![b"b".to_vec()]);
    }

    #[test]
    fn finds_restart_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["10.log", "2.log", "x.log", "0.log"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let restarts: Vec<u32> = log_files(dir.path()).into_iter().map(|(restart, _)| restart).collect();
        assert_eq!(restarts, [0, 2, 10]);
    }
}
