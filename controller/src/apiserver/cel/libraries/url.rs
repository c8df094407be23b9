//! The url library: `url`, `isURL`, `getScheme`, `getHost`, `getHostname`, `getPort`, `getEscapedPath` and
//! `getQuery`, on `kubernetes.URL` ([`Url`]), with Go's `net/url` parsing reimplemented as far as they use it: its
//! `ParseRequestURI` decides what is accepted, its `Parse` gives the parts, and its `URL.String` is what URLs
//! compare by. The format library's `uri` format validates with the same `ParseRequestURI`.

use std::collections::HashMap;
use std::fmt;

use cel::common::types::{CelBool, CelMap, CelMapKey, CelString, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError};

use super::{
    go_quote, go_quote_bytes, opaque_arg, opaque_result, opaque_type, owned, string_arg, string_list, take, unhex,
    Returned,
};

const URL_TYPE: &str = "kubernetes.URL";

/// A URL (`kubernetes.URL`) as Go's `url.URL` holds it. Decoded parts are bytes, as Go strings are: a `%ff` in a
/// path decodes to a byte that is no UTF-8.
#[derive(Clone, Debug, Default)]
pub struct Url {
    scheme: String,
    opaque: String,
    user: Option<UserInfo>,
    host: Vec<u8>,
    path: Vec<u8>,
    raw_path: String,
    omit_host: bool,
    force_query: bool,
    raw_query: String,
    fragment: Vec<u8>,
    raw_fragment: String,
}

#[derive(Clone, Debug)]
struct UserInfo {
    username: Vec<u8>,
    password: Option<Vec<u8>>,
}

/// Go's `url.encoding`: which part of a URL a string is escaped or unescaped for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UrlPart {
    Path,
    Host,
    Zone,
    UserPassword,
    QueryComponent,
    Fragment,
}

/// Go's `shouldEscape`.
fn should_escape(c: u8, part: UrlPart) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if matches!(part, UrlPart::Host | UrlPart::Zone)
        && matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        )
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match part {
            UrlPart::Path => return c == b'?',
            UrlPart::UserPassword => return matches!(c, b'@' | b'/' | b'?' | b':'),
            UrlPart::QueryComponent => return true,
            UrlPart::Fragment => return false,
            UrlPart::Host | UrlPart::Zone => {}
        },
        _ => {}
    }
    !(part == UrlPart::Fragment && matches!(c, b'!' | b'(' | b')' | b'*'))
}

/// Go's `unescape`, with its errors' messages.
fn url_unescape(s: &str, part: UrlPart) -> Result<Vec<u8>, String> {
    let bytes = s.as_bytes();
    let escape_error = |at: &[u8]| format!("invalid URL escape {}", go_quote_bytes(at));
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if i + 2 >= bytes.len() || !bytes[i + 1].is_ascii_hexdigit() || !bytes[i + 2].is_ascii_hexdigit() {
                    let rest = &bytes[i..];
                    return Err(escape_error(&rest[..rest.len().min(3)]));
                }
                let escaped = &bytes[i..i + 3];
                // A host may only escape non-ASCII bytes, and `%25` for a zone's `%` (RFC 6874).
                if part == UrlPart::Host && unhex(bytes[i + 1]) < 8 && escaped != b"%25" {
                    return Err(escape_error(escaped));
                }
                if part == UrlPart::Zone {
                    let decoded = (unhex(bytes[i + 1]) << 4) | unhex(bytes[i + 2]);
                    if escaped != b"%25" && decoded != b' ' && should_escape(decoded, UrlPart::Host) {
                        return Err(escape_error(escaped));
                    }
                }
                i += 3;
            }
            c => {
                if matches!(part, UrlPart::Host | UrlPart::Zone) && c < 0x80 && should_escape(c, part) {
                    return Err(format!("invalid character {} in host name", go_quote_bytes(&bytes[i..i + 1])));
                }
                i += 1;
            }
        }
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                decoded.push((unhex(bytes[i + 1]) << 4) | unhex(bytes[i + 2]));
                i += 3;
            }
            b'+' if part == UrlPart::QueryComponent => {
                decoded.push(b' ');
                i += 1;
            }
            c => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    Ok(decoded)
}

/// Go's `escape`.
fn url_escape(bytes: &[u8], part: UrlPart) -> String {
    let mut escaped = String::with_capacity(bytes.len());
    for &c in bytes {
        if c == b' ' && part == UrlPart::QueryComponent {
            escaped.push('+');
        } else if should_escape(c, part) {
            escaped.push_str(&format!("%{c:02X}"));
        } else {
            escaped.push(char::from(c));
        }
    }
    escaped
}

/// Go's `validEncoded`: whether `s` needs no more escaping than it has.
fn url_valid_encoded(s: &str, part: UrlPart) -> bool {
    s.bytes().all(|c| {
        matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'['
                | b']'
                | b'%'
        ) || !should_escape(c, part)
    })
}

fn valid_optional_port(port: &[u8]) -> bool {
    match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

fn url_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i == 0 => return Ok(("", raw)),
            b'0'..=b'9' | b'+' | b'-' | b'.' => {}
            b':' if i == 0 => return Err("missing protocol scheme".to_owned()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

fn parse_host(host: &str) -> Result<Vec<u8>, String> {
    if host.starts_with('[') {
        let close = host.rfind(']').ok_or_else(|| "missing ']' in host".to_owned())?;
        let colon_port = &host[close + 1..];
        if !valid_optional_port(colon_port.as_bytes()) {
            return Err(format!("invalid port {} after host", go_quote(colon_port)));
        }
        // The zone of an IPv6 literal (RFC 6874) may escape more than the rest of a host.
        if let Some(zone) = host[..close].find("%25") {
            let mut decoded = url_unescape(&host[..zone], UrlPart::Host)?;
            decoded.extend(url_unescape(&host[zone..close], UrlPart::Zone)?);
            decoded.extend(url_unescape(&host[close..], UrlPart::Host)?);
            return Ok(decoded);
        }
    } else if let Some(colon) = host.rfind(':') {
        let colon_port = &host[colon..];
        if !valid_optional_port(colon_port.as_bytes()) {
            return Err(format!("invalid port {} after host", go_quote(colon_port)));
        }
    }
    url_unescape(host, UrlPart::Host)
}

fn parse_authority(authority: &str) -> Result<(Option<UserInfo>, Vec<u8>), String> {
    let at = authority.rfind('@');
    let host = parse_host(at.map_or(authority, |at| &authority[at + 1..]))?;
    let Some(at) = at else {
        return Ok((None, host));
    };
    let userinfo = &authority[..at];
    let valid = userinfo.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '-' | '.'
                    | '_'
                    | ':'
                    | '~'
                    | '!'
                    | '$'
                    | '&'
                    | '\''
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | ','
                    | ';'
                    | '='
                    | '%'
                    | '@'
            )
    });
    if !valid {
        return Err("net/url: invalid userinfo".to_owned());
    }
    let user = match userinfo.split_once(':') {
        None => UserInfo { username: url_unescape(userinfo, UrlPart::UserPassword)?, password: None },
        Some((username, password)) => UserInfo {
            username: url_unescape(username, UrlPart::UserPassword)?,
            password: Some(url_unescape(password, UrlPart::UserPassword)?),
        },
    };
    Ok((Some(user), host))
}

impl Url {
    /// Go's `url.Parse`: any URL reference, its fragment included.
    fn parse(raw: &str) -> Result<Url, String> {
        let (without_fragment, fragment) = raw.split_once('#').unwrap_or((raw, ""));
        let mut url = Url::parse_reference(without_fragment, false)
            .map_err(|error| format!("parse {}: {error}", go_quote(without_fragment)))?;
        if !fragment.is_empty() {
            url.set_fragment(fragment).map_err(|error| format!("parse {}: {error}", go_quote(raw)))?;
        }
        Ok(url)
    }

    /// Go's `url.ParseRequestURI`: an absolute URI or an absolute path, with no fragment (a `#` is just a byte).
    pub(super) fn parse_request_uri(raw: &str) -> Result<Url, String> {
        Url::parse_reference(raw, true).map_err(|error| format!("parse {}: {error}", go_quote(raw)))
    }

    /// Go's `parse`.
    fn parse_reference(raw: &str, via_request: bool) -> Result<Url, String> {
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("net/url: invalid control character in URL".to_owned());
        }
        if raw.is_empty() && via_request {
            return Err("empty url".to_owned());
        }
        let mut url = Url::default();
        if raw == "*" {
            url.path = b"*".to_vec();
            return Ok(url);
        }
        let (scheme, mut rest) = url_scheme(raw)?;
        url.scheme = scheme.to_ascii_lowercase();
        if rest.ends_with('?') && rest.matches('?').count() == 1 {
            url.force_query = true;
            rest = &rest[..rest.len() - 1];
        } else if let Some((before, query)) = rest.split_once('?') {
            url.raw_query = query.to_owned();
            rest = before;
        }
        if !rest.starts_with('/') {
            if !url.scheme.is_empty() {
                // A rootless path after a scheme is opaque (RFC 3986).
                url.opaque = rest.to_owned();
                return Ok(url);
            }
            if via_request {
                return Err("invalid URI for request".to_owned());
            }
            if rest.split('/').next().is_some_and(|segment| segment.contains(':')) {
                return Err("first path segment in URL cannot contain colon".to_owned());
            }
        }
        if (!url.scheme.is_empty() || !via_request && !rest.starts_with("///")) && rest.starts_with("//") {
            let authority_and_path = &rest[2..];
            let (authority, path) = match authority_and_path.find('/') {
                Some(slash) => authority_and_path.split_at(slash),
                None => (authority_and_path, ""),
            };
            (url.user, url.host) = parse_authority(authority)?;
            rest = path;
        } else if !url.scheme.is_empty() && rest.starts_with('/') {
            url.omit_host = true;
        }
        url.set_path(rest)?;
        Ok(url)
    }

    fn set_path(&mut self, path: &str) -> Result<(), String> {
        self.path = url_unescape(path, UrlPart::Path)?;
        // Only kept when the default escaping of the path would differ.
        self.raw_path = if url_escape(&self.path, UrlPart::Path) == path { String::new() } else { path.to_owned() };
        Ok(())
    }

    fn set_fragment(&mut self, fragment: &str) -> Result<(), String> {
        self.fragment = url_unescape(fragment, UrlPart::Fragment)?;
        self.raw_fragment =
            if url_escape(&self.fragment, UrlPart::Fragment) == fragment { String::new() } else { fragment.to_owned() };
        Ok(())
    }

    /// Go's `EscapedPath`: the path as written when that is a valid encoding of it, else escaped.
    fn escaped_path(&self) -> String {
        if !self.raw_path.is_empty()
            && url_valid_encoded(&self.raw_path, UrlPart::Path)
            && url_unescape(&self.raw_path, UrlPart::Path).is_ok_and(|path| path == self.path)
        {
            return self.raw_path.clone();
        }
        if self.path == b"*" {
            return "*".to_owned();
        }
        url_escape(&self.path, UrlPart::Path)
    }

    fn escaped_fragment(&self) -> String {
        if !self.raw_fragment.is_empty()
            && url_valid_encoded(&self.raw_fragment, UrlPart::Fragment)
            && url_unescape(&self.raw_fragment, UrlPart::Fragment).is_ok_and(|fragment| fragment == self.fragment)
        {
            return self.raw_fragment.clone();
        }
        url_escape(&self.fragment, UrlPart::Fragment)
    }

    /// Go's `splitHostPort`: the host without its port (and without the brackets of an IPv6 literal), and the port.
    fn host_and_port(&self) -> (&[u8], &[u8]) {
        let mut host: &[u8] = &self.host;
        let mut port: &[u8] = b"";
        if let Some(colon) = host.iter().rposition(|&b| b == b':') {
            if valid_optional_port(&host[colon..]) {
                port = &host[colon + 1..];
                host = &host[..colon];
            }
        }
        if host.len() >= 2 && host.starts_with(b"[") && host.ends_with(b"]") {
            host = &host[1..host.len() - 1];
        }
        (host, port)
    }

    /// Go's `Query`: the query's keys and values, unescaped, skipping what does not unescape.
    fn query(&self) -> HashMap<String, Vec<String>> {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        for pair in self.raw_query.split('&') {
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Ok(key), Ok(value)) =
                (url_unescape(key, UrlPart::QueryComponent), url_unescape(value, UrlPart::QueryComponent))
            else {
                continue;
            };
            values
                .entry(String::from_utf8_lossy(&key).into_owned())
                .or_default()
                .push(String::from_utf8_lossy(&value).into_owned());
        }
        values
    }
}

/// Go's `URL.String`, by which upstream compares URLs.
impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        if !self.scheme.is_empty() {
            out.push_str(&self.scheme);
            out.push(':');
        }
        if !self.opaque.is_empty() {
            out.push_str(&self.opaque);
        } else {
            // Go writes an authority when there is one, or a scheme, unless the URL was parsed without one.
            let has_authority = !self.scheme.is_empty() || !self.host.is_empty() || self.user.is_some();
            let omitted_host = self.omit_host && self.host.is_empty() && self.user.is_none();
            if has_authority && !omitted_host {
                if !self.host.is_empty() || !self.path.is_empty() || self.user.is_some() {
                    out.push_str("//");
                }
                if let Some(user) = &self.user {
                    out.push_str(&url_escape(&user.username, UrlPart::UserPassword));
                    if let Some(password) = &user.password {
                        out.push(':');
                        out.push_str(&url_escape(password, UrlPart::UserPassword));
                    }
                    out.push('@');
                }
                out.push_str(&url_escape(&self.host, UrlPart::Host));
            }
            let path = self.escaped_path();
            if !path.is_empty() && !path.starts_with('/') && !self.host.is_empty() {
                out.push('/');
            }
            if out.is_empty() && path.split('/').next().is_some_and(|segment| segment.contains(':')) {
                out.push_str("./");
            }
            out.push_str(&path);
        }
        if self.force_query || !self.raw_query.is_empty() {
            out.push('?');
            out.push_str(&self.raw_query);
        }
        if !self.fragment.is_empty() {
            out.push('#');
            out.push_str(&self.escaped_fragment());
        }
        f.write_str(&out)
    }
}

impl PartialEq for Url {
    fn eq(&self, other: &Url) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Url {}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        URL_TYPE
    }
}

pub(super) fn register_urls(env: &mut Env) -> Result<(), DeclarationError> {
    let url = || opaque_type(URL_TYPE);
    env.add_type(url())?;
    env.add_overload("url", "string_to_url", vec![STRING_TYPE], url_from_string)?;
    cel::add_overload!(env, fn is_url: (CelString<'_>) -> CelBool, name = "isURL", id = "is_url_string")?;
    env.add_member_overload("getScheme", "url_get_scheme", url(), vec![], url_get_scheme)?;
    env.add_member_overload("getHost", "url_get_host", url(), vec![], url_get_host)?;
    env.add_member_overload("getHostname", "url_get_hostname", url(), vec![], url_get_hostname)?;
    env.add_member_overload("getPort", "url_get_port", url(), vec![], url_get_port)?;
    env.add_member_overload("getEscapedPath", "url_get_escaped_path", url(), vec![], url_get_escaped_path)?;
    env.add_member_overload("getQuery", "url_get_query", url(), vec![], url_get_query)?;
    Ok(())
}

fn url_from_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [text] = take(args)?;
    let text = string_arg(&*text)?;
    let error = |error: String| {
        ExecutionError::function_error("url", format!("URL parse error during conversion from string: {error}"))
    };
    // Upstream accepts what `ParseRequestURI` (an absolute URI or path) accepts, but takes the parts from `Parse`,
    // which, unlike it, knows about fragments.
    Url::parse_request_uri(text).map_err(error)?;
    opaque_result(Url::parse(text).map_err(error)?)
}

fn is_url(text: &CelString<'_>) -> CelBool {
    Url::parse_request_uri(text).is_ok().into()
}

fn url_string_getter<'b, 'v>(args: Vec<CowVal<'b, 'v>>, get: fn(&Url) -> String) -> Returned<'b, 'v> {
    let [url] = take(args)?;
    owned(CelString::from(get(&opaque_arg::<Url>(&*url, URL_TYPE)?)))
}

fn url_get_scheme<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    url_string_getter(args, |url| url.scheme.clone())
}

fn url_get_host<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    url_string_getter(args, |url| String::from_utf8_lossy(&url.host).into_owned())
}

fn url_get_hostname<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    url_string_getter(args, |url| String::from_utf8_lossy(url.host_and_port().0).into_owned())
}

fn url_get_port<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    url_string_getter(args, |url| String::from_utf8_lossy(url.host_and_port().1).into_owned())
}

fn url_get_escaped_path<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    url_string_getter(args, Url::escaped_path)
}

fn url_get_query<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [url] = take(args)?;
    let query = opaque_arg::<Url>(&*url, URL_TYPE)?.query();
    let entries: HashMap<CelMapKey<'static>, Box<dyn Val>> = query
        .into_iter()
        .map(|(key, values)| (CelMapKey::from(key), Box::new(string_list(values)) as Box<dyn Val>))
        .collect();
    owned(CelMap::from(entries))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_error, assert_false, assert_true, assert_value};
    use super::*;

    #[test]
    fn url_parts() {
        let full = "url('https://user:pass@example.com:80/path?query=val#fragment')";
        assert_value(&format!("{full}.getScheme()"), "https");
        assert_value(&format!("{full}.getHost()"), "example.com:80");
        assert_value(&format!("{full}.getHostname()"), "example.com");
        assert_value(&format!("{full}.getPort()"), "80");
        assert_value(&format!("{full}.getEscapedPath()"), "/path");
        assert_true(&format!("{full}.getQuery() == {{'query': ['val']}}"));
        assert_value("url('/path').getScheme()", "");
        assert_value("url('https://example.com/').getHost()", "example.com");
        assert_value("url('https://[::1]:80/').getHost()", "[::1]:80");
        assert_value("url('https://[::1]/').getHost()", "[::1]");
        assert_value("url('/path').getHost()", "");
        assert_value("url('https://127.0.0.1:80/').getHostname()", "127.0.0.1");
        assert_value("url('https://[::1]:80/').getHostname()", "::1");
        assert_value("url('/path').getHostname()", "");
        assert_value("url('https://example.com/').getPort()", "");
        assert_value("url('https://example.com/path with spaces/').getEscapedPath()", "/path%20with%20spaces/");
        assert_value("url('https://example.com/a%2Fb').getEscapedPath()", "/a%2Fb");
        assert_value("url('https://example.com').getEscapedPath()", "");
        assert_value("url('mailto:someone@example.com').getScheme()", "mailto");
        assert_value("url('HTTPS://example.com').getScheme()", "https");
        assert_value("url('//example.com/a').getHost()", "example.com");
        // An IPv6 zone is escaped as `%25` in a URL (RFC 6874), and unescaped in its host.
        assert_value("url('https://[fe80::1%25en0]:8080/').getHost()", "[fe80::1%en0]:8080");
        assert_value("url('https://[fe80::1%25en0]:8080/').getHostname()", "fe80::1%en0");
        assert_value("url('https://[fe80::1%25en0]:8080/').getPort()", "8080");
        assert_value("url('https://example.com:/').getPort()", "");
    }

    #[test]
    fn url_query() {
        assert_true("url('https://example.com/path?k1=a&k2=b&k2=c').getQuery() == {'k1': ['a'], 'k2': ['b', 'c']}");
        assert_true(
            "url('https://example.com/path?key with spaces=value with spaces').getQuery() \
             == {'key with spaces': ['value with spaces']}",
        );
        assert_true(
            "url('https://example.com/path?a=1+2&b=%41&c&bad=%zz&x;y=1').getQuery() \
                     == {'a': ['1 2'], 'b': ['A'], 'c': ['']}",
        );
        assert_true("url('https://example.com/path?').getQuery() == {}");
        assert_true("url('https://example.com/path').getQuery() == {}");
        assert_true("url('https://example.com/path?a=1#b=2').getQuery() == {'a': ['1']}");
    }

    #[test]
    fn url_errors_are_go_ones() {
        let prefix = "URL parse error during conversion from string: ";
        assert_error(
            "url('https://a:b:c/')",
            &format!(r#"{prefix}parse "https://a:b:c/": invalid port ":c" after host"#),
        );
        assert_error(
            "url('../relative-path')",
            &format!(r#"{prefix}parse "../relative-path": invalid URI for request"#),
        );
        assert_error("url('')", &format!(r#"{prefix}parse "": empty url"#));
        assert_error("url(':x')", &format!(r#"{prefix}parse ":x": missing protocol scheme"#));
        assert_error("url('/a%zz')", &format!(r#"{prefix}parse "/a%zz": invalid URL escape "%zz""#));
        assert_error(
            "url('https://exa mple.com/')",
            &format!(r#"{prefix}parse "https://exa mple.com/": invalid character " " in host name"#),
        );
        assert_error(
            "url('https://example.com/\\n')",
            &format!(r#"{prefix}parse "https://example.com/\n": net/url: invalid control character in URL"#),
        );
        assert_error("url('https://[::1/')", &format!(r#"{prefix}parse "https://[::1/": missing ']' in host"#));
        assert_error("url('https://a b@x/')", &format!(r#"{prefix}parse "https://a b@x/": net/url: invalid userinfo"#));
        assert_error("url('https://x/#%zz')", &format!(r#"{prefix}parse "https://x/#%zz": invalid URL escape "%zz""#));
    }

    #[test]
    fn is_url() {
        assert_true("isURL('https://user:pass@example.com:80/path?query=val#fragment')");
        assert_true("isURL('/absolute-path')");
        assert_true("isURL('*')");
        assert_false("isURL('https://a:b:c/')");
        assert_false("isURL('../relative-path')");
        assert_false("isURL('')");
    }

    #[test]
    fn urls_are_equal_when_go_prints_them_the_same() {
        assert_true("url('HTTPS://example.com/a') == url('https://example.com/a')");
        assert_true("url('https://example.com/a b') == url('https://example.com/a%20b')");
        // Go keeps an escaping that is valid as written, and prints it so.
        assert_false("url('https://example.com/a%41') == url('https://example.com/aA')");
        assert_false("url('https://example.com/a') == url('https://example.com/b')");
        assert_true("type(url('/a')) == kubernetes.URL");
        assert_eq!(
            Url::parse("https://u:p@h:1/a b?q#f g").map(|url| url.to_string()),
            Ok("https://u:p@h:1/a%20b?q#f%20g".into())
        );
        assert_eq!(Url::parse("mailto:x@y").map(|url| url.to_string()), Ok("mailto:x@y".into()));
        assert_eq!(Url::parse("file:///tmp").map(|url| url.to_string()), Ok("file:///tmp".into()));
    }
}
