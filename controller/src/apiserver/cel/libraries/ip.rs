//! The ip library: `ip`, `isIP`, `ip.isCanonical`, `family`, `isUnspecified`, `isLoopback`,
//! `isLinkLocalMulticast`, `isLinkLocalUnicast`, `isGlobalUnicast` and `string(ip)`, on `net.IP` ([`Ip`]), with Go's
//! `net/netip` address parsing and printing reimplemented, and their messages. Upstream refuses zones and
//! IPv4-mapped IPv6 addresses; the cidr library (`cidr.rs`) parses the address of a CIDR with the same functions.

use std::fmt;

use cel::common::types::{CelBool, CelInt, CelString, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError};

use super::{go_quote, opaque_arg, opaque_result, opaque_type, owned, string_arg, take, unhex, Returned};

pub(super) const IP_TYPE: &str = "net.IP";

/// An IP address (`net.IP`). Upstream refuses zones and IPv4-mapped IPv6 addresses, so neither is represented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// Go's `netip.parseAddrError`.
pub(super) struct AddrParseError {
    input: String,
    message: &'static str,
    at: String,
}

impl AddrParseError {
    fn new(input: &str, message: &'static str, at: &str) -> AddrParseError {
        AddrParseError { input: input.to_owned(), message, at: at.to_owned() }
    }
}

impl fmt::Display for AddrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParseAddr({}): {}", go_quote(&self.input), self.message)?;
        if !self.at.is_empty() {
            write!(f, " (at {})", go_quote(&self.at))?;
        }
        Ok(())
    }
}

/// Go's `parseIPv4Fields`: the dotted decimal address `input[start..end]` into `fields`.
fn parse_ipv4_fields(input: &str, start: usize, end: usize, fields: &mut [u8]) -> Result<(), AddrParseError> {
    let s = &input.as_bytes()[start..end];
    let error = |message, at: &str| Err(AddrParseError::new(input, message, at));
    let (mut value, mut field, mut digits) = (0u32, 0usize, 0);
    for (i, &c) in s.iter().enumerate() {
        if c.is_ascii_digit() {
            if digits == 1 && value == 0 {
                return error("IPv4 field has octet with leading zero", "");
            }
            value = value * 10 + u32::from(c - b'0');
            digits += 1;
            if value > 255 {
                return error("IPv4 field has value >255", "");
            }
        } else if c == b'.' {
            if i == 0 || i == s.len() - 1 || s[i - 1] == b'.' {
                return error("IPv4 field must have at least one digit", &input[start + i..end]);
            }
            if field == 3 {
                return error("IPv4 address too long", "");
            }
            fields[field] = value as u8;
            field += 1;
            value = 0;
            digits = 0;
        } else {
            return error("unexpected character", &input[start + i..end]);
        }
    }
    if field < 3 {
        return error("IPv4 address too short", "");
    }
    fields[3] = value as u8;
    Ok(())
}

/// Go's `parseIPv6`, which also returns the zone.
fn parse_ipv6(input: &str) -> Result<(Ip, Option<&str>), AddrParseError> {
    let error = |message, at: &str| Err(AddrParseError::new(input, message, at));
    let (mut s, zone) = match input.split_once('%') {
        Some((_, "")) => return error("zone must be a non-empty string", ""),
        Some((address, zone)) => (address, Some(zone)),
        None => (input, None),
    };
    let mut ip = [0u8; 16];
    let mut ellipsis: Option<usize> = None;
    if s.starts_with("::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return Ok((Ip::V6(ip), zone));
        }
    }
    let mut i = 0;
    while i < 16 {
        let bytes = s.as_bytes();
        let mut off = 0;
        let mut field = 0u32;
        while off < bytes.len() {
            let c = bytes[off];
            if !c.is_ascii_hexdigit() {
                break;
            }
            field = (field << 4) + u32::from(unhex(c));
            if off > 3 {
                return error("each colon-separated field must have at most 4 hex digits", s);
            }
            off += 1;
        }
        if off == 0 {
            return error("each colon-separated field must have at least one digit", s);
        }
        if off < bytes.len() && bytes[off] == b'.' {
            if ellipsis.is_none() && i != 12 {
                return error("embedded IPv4 address must replace the final 2 fields of the address", s);
            }
            if i + 4 > 16 {
                return error("too many hex fields to fit an embedded IPv4 at the end of the address", s);
            }
            let end = input.len() - zone.map_or(0, |zone| zone.len() + 1);
            parse_ipv4_fields(input, end - s.len(), end, &mut ip[i..i + 4])?;
            s = "";
            i += 4;
            break;
        }
        ip[i] = (field >> 8) as u8;
        ip[i + 1] = field as u8;
        i += 2;
        s = &s[off..];
        if s.is_empty() {
            break;
        }
        if !s.starts_with(':') {
            return error("unexpected character, want colon", s);
        }
        if s.len() == 1 {
            return error("colon must be followed by more characters", s);
        }
        s = &s[1..];
        if s.starts_with(':') {
            if ellipsis.is_some() {
                return error("multiple :: in address", s);
            }
            ellipsis = Some(i);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return error("trailing garbage after address", s);
    }
    if i < 16 {
        let Some(ellipsis) = ellipsis else {
            return error("address string too short", "");
        };
        let shift = 16 - i;
        ip.copy_within(ellipsis..i, ellipsis + shift);
        ip[ellipsis..ellipsis + shift].fill(0);
    } else if ellipsis.is_some() {
        return error("the :: must expand to at least one field of zeros", s);
    }
    Ok((Ip::V6(ip), zone))
}

/// Go's `netip.ParseAddr`, which also returns the zone.
pub(super) fn parse_addr(input: &str) -> Result<(Ip, Option<&str>), AddrParseError> {
    for c in input.bytes() {
        match c {
            b'.' => {
                let mut fields = [0u8; 4];
                parse_ipv4_fields(input, 0, input.len(), &mut fields)?;
                return Ok((Ip::V4(fields), None));
            }
            b':' => return parse_ipv6(input),
            b'%' => return Err(AddrParseError::new(input, "missing IPv6 address", "")),
            _ => {}
        }
    }
    Err(AddrParseError::new(input, "unable to parse IP", ""))
}

/// Upstream's `parseIPAddr`: Go's parsing, without zones or IPv4-mapped IPv6 addresses.
pub(super) fn parse_ip(input: &str) -> Result<Ip, String> {
    let (ip, zone) = parse_addr(input).map_err(|error| {
        format!("IP Address {} parse error during conversion from string: {error}", go_quote(input))
    })?;
    if zone.is_some() {
        return Err(format!("IP address {} with zone value is not allowed", go_quote(input)));
    }
    if ip.is_ipv4_mapped() {
        return Err(format!("IPv4-mapped IPv6 address {} is not allowed", go_quote(input)));
    }
    Ok(ip)
}

impl Ip {
    pub(super) fn is_ipv4_mapped(&self) -> bool {
        matches!(self, Ip::V6(bytes) if bytes[..10].iter().all(|&b| b == 0) && bytes[10] == 0xff && bytes[11] == 0xff)
    }

    pub(super) fn family(&self) -> i64 {
        match self {
            Ip::V4(_) => 4,
            Ip::V6(_) => 6,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Ip::V4(bytes) => bytes,
            Ip::V6(bytes) => bytes,
        }
    }

    fn is_unspecified(&self) -> bool {
        self.bytes().iter().all(|&b| b == 0)
    }

    fn is_loopback(&self) -> bool {
        match self {
            Ip::V4(bytes) => bytes[0] == 127,
            Ip::V6(bytes) => bytes[..15].iter().all(|&b| b == 0) && bytes[15] == 1,
        }
    }

    fn is_multicast(&self) -> bool {
        match self {
            Ip::V4(bytes) => bytes[0] & 0xf0 == 0xe0,
            Ip::V6(bytes) => bytes[0] == 0xff,
        }
    }

    /// 224.0.0.0/24, or IPv6 multicast of link-local scope (ff02::/16, whatever the flags), as Go has it.
    fn is_link_local_multicast(&self) -> bool {
        match self {
            Ip::V4(bytes) => bytes[..3] == [224, 0, 0],
            Ip::V6(bytes) => bytes[0] == 0xff && bytes[1] & 0x0f == 0x02,
        }
    }

    fn is_link_local_unicast(&self) -> bool {
        match self {
            Ip::V4(bytes) => bytes[..2] == [169, 254],
            Ip::V6(bytes) => bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80,
        }
    }

    /// Go's definition, under which private IPv4 addresses and unique local IPv6 ones are global unicast too.
    fn is_global_unicast(&self) -> bool {
        if *self == Ip::V4([255, 255, 255, 255]) {
            return false;
        }
        !self.is_unspecified() && !self.is_loopback() && !self.is_multicast() && !self.is_link_local_unicast()
    }

    /// The address with all but the first `bits` bits zero.
    pub(super) fn masked(&self, bits: u8) -> Ip {
        let mut masked = *self;
        let bytes: &mut [u8] = match &mut masked {
            Ip::V4(bytes) => bytes,
            Ip::V6(bytes) => bytes,
        };
        for (i, byte) in bytes.iter_mut().enumerate() {
            let kept = (usize::from(bits)).saturating_sub(i * 8).min(8);
            *byte &= if kept == 0 { 0 } else { 0xffu8 << (8 - kept) };
        }
        masked
    }
}

/// Go's `Addr.String`: dotted decimal, or RFC 5952 (lower case, the first longest run of two or more zero fields
/// as `::`), which is what `ip.isCanonical` compares to.
impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ip::V4([a, b, c, d]) => write!(f, "{a}.{b}.{c}.{d}"),
            Ip::V6(bytes) => {
                let fields: Vec<u16> =
                    bytes.chunks(2).map(|pair| u16::from(pair[0]) << 8 | u16::from(pair[1])).collect();
                let (mut zeros_start, mut zeros_len) = (8, 0);
                let mut i = 0;
                while i < 8 {
                    let run = fields[i..].iter().take_while(|&&field| field == 0).count();
                    if run >= 2 && run > zeros_len {
                        (zeros_start, zeros_len) = (i, run);
                    }
                    i += run.max(1);
                }
                let mut i = 0;
                while i < 8 {
                    if i == zeros_start {
                        f.write_str("::")?;
                        i += zeros_len;
                        continue;
                    }
                    if i > 0 && i != zeros_start + zeros_len {
                        f.write_str(":")?;
                    }
                    write!(f, "{:x}", fields[i])?;
                    i += 1;
                }
                Ok(())
            }
        }
    }
}

impl Opaque for Ip {
    fn runtime_type_name(&self) -> &str {
        IP_TYPE
    }
}

pub(super) fn register_ip(env: &mut Env) -> Result<(), DeclarationError> {
    let ip = || opaque_type(IP_TYPE);
    env.add_type(ip())?;
    env.add_overload("ip", "string_to_ip", vec![STRING_TYPE], ip_from_string)?;
    env.add_overload("ip.isCanonical", "ip_is_canonical", vec![STRING_TYPE], ip_is_canonical)?;
    cel::add_overload!(env, fn is_ip: (CelString<'_>) -> CelBool, name = "isIP", id = "is_ip")?;
    env.add_member_overload("family", "ip_family", ip(), vec![], ip_family)?;
    env.add_member_overload("isUnspecified", "ip_is_unspecified", ip(), vec![], ip_is_unspecified)?;
    env.add_member_overload("isLoopback", "ip_is_loopback", ip(), vec![], ip_is_loopback)?;
    env.add_member_overload(
        "isLinkLocalMulticast",
        "ip_is_link_local_multicast",
        ip(),
        vec![],
        ip_is_link_local_multicast,
    )?;
    env.add_member_overload("isLinkLocalUnicast", "ip_is_link_local_unicast", ip(), vec![], ip_is_link_local_unicast)?;
    env.add_member_overload("isGlobalUnicast", "ip_is_global_unicast", ip(), vec![], ip_is_global_unicast)?;
    env.add_overload("string", "ip_to_string", vec![ip()], ip_to_string)?;
    Ok(())
}

pub(super) fn ip_arg(value: &dyn Val) -> Result<Ip, ExecutionError> {
    opaque_arg(value, IP_TYPE)
}

fn ip_from_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [text] = take(args)?;
    opaque_result(parse_ip(string_arg(&*text)?).map_err(|message| ExecutionError::function_error("ip", message))?)
}

fn ip_is_canonical<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [text] = take(args)?;
    let text = string_arg(&*text)?;
    let ip = parse_ip(text).map_err(|message| ExecutionError::function_error("ip.isCanonical", message))?;
    owned(CelBool::from(ip.to_string() == text))
}

fn is_ip(text: &CelString<'_>) -> CelBool {
    parse_ip(text).is_ok().into()
}

fn ip_predicate<'b, 'v>(args: Vec<CowVal<'b, 'v>>, predicate: fn(&Ip) -> bool) -> Returned<'b, 'v> {
    let [ip] = take(args)?;
    owned(CelBool::from(predicate(&ip_arg(&*ip)?)))
}

fn ip_family<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [ip] = take(args)?;
    owned(CelInt::from(ip_arg(&*ip)?.family()))
}

fn ip_is_unspecified<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    ip_predicate(args, Ip::is_unspecified)
}

fn ip_is_loopback<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    ip_predicate(args, Ip::is_loopback)
}

fn ip_is_link_local_multicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    ip_predicate(args, Ip::is_link_local_multicast)
}

fn ip_is_link_local_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    ip_predicate(args, Ip::is_link_local_unicast)
}

fn ip_is_global_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    ip_predicate(args, Ip::is_global_unicast)
}

fn ip_to_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [ip] = take(args)?;
    owned(CelString::from(ip_arg(&*ip)?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_error, assert_false, assert_no_overload, assert_true, assert_value};
    use super::*;

    #[test]
    fn ip_parses_as_go() {
        assert_true("ip('192.168.0.1') == ip('192.168.0.1')");
        assert_true("ip('2001:db8::68') == ip('2001:DB8:0::68')");
        assert_true("type(ip('192.168.0.1')) == net.IP");
        let prefix = "IP Address \"192.168.0.1.0\" parse error during conversion from string: ";
        assert_error("ip('192.168.0.1.0')", &format!("{prefix}ParseAddr(\"192.168.0.1.0\"): IPv4 address too long"));
        assert_error(
            "ip('2001:db8:::68')",
            "IP Address \"2001:db8:::68\" parse error during conversion from string: ParseAddr(\"2001:db8:::68\"): \
             each colon-separated field must have at least one digit (at \":68\")",
        );
        for (input, reason) in [
            ("127.0.0.256", "IPv4 field has value >255"),
            ("127.0.0.01", "IPv4 field has octet with leading zero"),
            ("1.2.3", "IPv4 address too short"),
            ("1..2.3", "IPv4 field must have at least one digit (at \".2.3\")"),
            ("1.2.3.x", "unexpected character (at \"x\")"),
            ("", "unable to parse IP"),
            ("%eth0", "missing IPv6 address"),
            (":::1", "each colon-separated field must have at least one digit (at \":1\")"),
            ("1::2::3", "multiple :: in address (at \":3\")"),
            ("12345::", "each colon-separated field must have at most 4 hex digits (at \"12345::\")"),
            ("1:2:3:4:5:6:7", "address string too short"),
            ("1:2:3:4:5:6:7:8:9", "trailing garbage after address (at \"9\")"),
            ("1:2:3:4::5:6:7:8", "the :: must expand to at least one field of zeros"),
            ("1:", "colon must be followed by more characters (at \":\")"),
            ("1:2.3.4.5", "embedded IPv4 address must replace the final 2 fields of the address (at \"2.3.4.5\")"),
            ("fe80::1%", "zone must be a non-empty string"),
        ] {
            let expected = format!(
                "IP Address {0} parse error during conversion from string: ParseAddr({0}): {reason}",
                go_quote(input)
            );
            assert_error(&format!("ip('{input}')"), &expected);
            assert_false(&format!("isIP('{input}')"));
        }
        assert_error("ip('fe80::1%eth0')", "IP address \"fe80::1%eth0\" with zone value is not allowed");
        assert_error("ip('::ffff:1.2.3.4')", "IPv4-mapped IPv6 address \"::ffff:1.2.3.4\" is not allowed");
        assert_false("isIP('fe80::1%eth0')");
        assert_false("isIP('::ffff:1.2.3.4')");
        assert_true("isIP('192.168.0.1') && isIP('2001:db8::68') && isIP('::') && isIP('64:ff9b::1.2.3.4')");
        assert_no_overload("isIP(cidr('192.168.0.0/24'))");
    }

    #[test]
    fn ip_prints_as_go() {
        for (input, canonical) in [
            ("192.168.0.1", "192.168.0.1"),
            ("2001:DB8::68", "2001:db8::68"),
            ("2001:0db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("0:0:0:0:0:0:0:1", "::1"),
            ("::", "::"),
            ("1::", "1::"),
            ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
            ("1:0:2:0:3:0:4:0", "1:0:2:0:3:0:4:0"),
            ("64:ff9b::1.2.3.4", "64:ff9b::102:304"),
        ] {
            assert_value(&format!("string(ip('{input}'))"), canonical);
            assert_value(&format!("ip.isCanonical('{input}')"), input == canonical);
        }
        assert_true("ip.isCanonical('127.0.0.1')");
        assert_true("ip.isCanonical('2001:db8::abcd')");
        assert_false("ip.isCanonical('2001:DB8::ABCD')");
        assert_false("ip.isCanonical('2001:db8::0:0:0:abcd')");
        assert_error(
            "ip.isCanonical('127.0.0.1.0')",
            "IP Address \"127.0.0.1.0\" parse error during conversion from string: ParseAddr(\"127.0.0.1.0\"): \
             IPv4 address too long",
        );
    }

    #[test]
    fn ip_properties() {
        assert_value("ip('192.168.0.1').family()", 4);
        assert_value("ip('::1').family()", 6);
        assert_true("ip('0.0.0.0').isUnspecified() && ip('::').isUnspecified()");
        assert_false("ip('127.0.0.1').isUnspecified() || ip('::1').isUnspecified()");
        assert_true("ip('127.0.0.1').isLoopback() && ip('127.1.2.3').isLoopback() && ip('::1').isLoopback()");
        assert_false("ip('1.2.3.4').isLoopback() || ip('2001:db8::abcd').isLoopback()");
        assert_true("ip('224.0.0.1').isLinkLocalMulticast() && ip('ff02::1').isLinkLocalMulticast()");
        assert_false("ip('224.0.1.1').isLinkLocalMulticast() || ip('fd00::1').isLinkLocalMulticast()");
        assert_true("ip('169.254.169.254').isLinkLocalUnicast() && ip('fe80::1').isLinkLocalUnicast()");
        assert_false("ip('192.168.0.1').isLinkLocalUnicast() || ip('fd80::1').isLinkLocalUnicast()");
        assert_true("ip('192.168.0.1').isGlobalUnicast() && ip('2001:db8::abcd').isGlobalUnicast()");
        assert_true("ip('fd00::1').isGlobalUnicast()");
        for not_global in
            ["255.255.255.255", "0.0.0.0", "127.0.0.1", "224.0.0.1", "169.254.0.1", "ff00::1", "::", "::1"]
        {
            assert_false(&format!("ip('{not_global}').isGlobalUnicast()"));
        }
    }
}
