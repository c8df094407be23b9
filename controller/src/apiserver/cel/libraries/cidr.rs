//! The cidr library: `cidr`, `isCIDR`, `containsIP`, `containsCIDR` (as fixed in v1.33: any subnet inside), `ip`,
//! `masked`, `prefixLength` and `string(cidr)`, on `net.CIDR` ([`Cidr`]), with Go's `netip.ParsePrefix`
//! reimplemented on top of the ip library's address parsing (`ip.rs`), and upstream's messages.

use std::fmt;

use cel::common::types::{CelBool, CelInt, CelString, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError};

use super::ip::{ip_arg, parse_addr, parse_ip, Ip, IP_TYPE};
use super::{go_quote, opaque_arg, opaque_result, opaque_type, owned, string_arg, take, Returned};

const CIDR_TYPE: &str = "net.CIDR";

/// An IP address and a prefix length (`net.CIDR`), the host bits not necessarily zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    address: Ip,
    bits: u8,
}

/// Go's `netip.ParsePrefix`, then upstream's refusal of IPv4-mapped addresses, with their messages.
fn parse_cidr(input: &str) -> Result<Cidr, String> {
    let error = |message: String| {
        format!(
            "network address parse error during conversion from string: netip.ParsePrefix({}): {message}",
            go_quote(input)
        )
    };
    let slash = input.rfind('/').ok_or_else(|| error("no '/'".to_owned()))?;
    let (address, zone) = parse_addr(&input[..slash]).map_err(|e| error(e.to_string()))?;
    if zone.is_some() {
        return Err(error("IPv6 zones cannot be present in a prefix".to_owned()));
    }
    let bits_text = &input[slash + 1..];
    // Go refuses signs and leading zeros that its integer parsing would take.
    let bad_bits = || error(format!("bad bits after slash: {}", go_quote(bits_text)));
    if bits_text.len() > 1 && !matches!(bits_text.as_bytes()[0], b'1'..=b'9') {
        return Err(bad_bits());
    }
    let bits: i64 = bits_text.parse().map_err(|_| bad_bits())?;
    let max_bits = if address.family() == 4 { 32 } else { 128 };
    if !(0..=max_bits).contains(&bits) {
        return Err(error("prefix length out of range".to_owned()));
    }
    if address.is_ipv4_mapped() {
        return Err(format!("IPv4-mapped IPv6 address {} is not allowed", go_quote(input)));
    }
    Ok(Cidr { address, bits: bits as u8 })
}

impl Cidr {
    fn masked(&self) -> Cidr {
        Cidr { address: self.address.masked(self.bits), bits: self.bits }
    }

    fn contains_ip(&self, ip: &Ip) -> bool {
        self.address.family() == ip.family() && self.address.masked(self.bits) == ip.masked(self.bits)
    }

    /// Whether `other` is this network or one inside it (v1.33 fixed upstream's, which wanted equal addresses).
    fn contains_cidr(&self, other: &Cidr) -> bool {
        self.bits <= other.bits && self.contains_ip(&other.address)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.bits)
    }
}

impl Opaque for Cidr {
    fn runtime_type_name(&self) -> &str {
        CIDR_TYPE
    }
}

pub(super) fn register_cidr(env: &mut Env) -> Result<(), DeclarationError> {
    let cidr = || opaque_type(CIDR_TYPE);
    let ip = || opaque_type(IP_TYPE);
    env.add_type(cidr())?;
    env.add_overload("cidr", "string_to_cidr", vec![STRING_TYPE], cidr_from_string)?;
    cel::add_overload!(env, fn is_cidr: (CelString<'_>) -> CelBool, name = "isCIDR", id = "is_cidr")?;
    env.add_member_overload("containsIP", "cidr_contains_ip_string", cidr(), vec![STRING_TYPE], cidr_has_ip_text)?;
    env.add_member_overload("containsIP", "cidr_contains_ip_ip", cidr(), vec![ip()], cidr_contains_ip)?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr_string",
        cidr(),
        vec![STRING_TYPE],
        cidr_has_cidr_text,
    )?;
    env.add_member_overload("containsCIDR", "cidr_contains_cidr", cidr(), vec![cidr()], cidr_contains_cidr)?;
    env.add_member_overload("ip", "cidr_ip", cidr(), vec![], cidr_ip)?;
    env.add_member_overload("prefixLength", "cidr_prefix_length", cidr(), vec![], cidr_prefix_length)?;
    env.add_member_overload("masked", "cidr_masked", cidr(), vec![], cidr_masked)?;
    env.add_overload("string", "cidr_to_string", vec![cidr()], cidr_to_string)?;
    Ok(())
}

fn cidr_arg(value: &dyn Val) -> Result<Cidr, ExecutionError> {
    opaque_arg(value, CIDR_TYPE)
}

fn cidr_from_text(text: &str, function: &str) -> Result<Cidr, ExecutionError> {
    parse_cidr(text).map_err(|message| {
        ExecutionError::function_error(
            function,
            format!("network address parse error during conversion from string: {message}"),
        )
    })
}

fn cidr_from_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [text] = take(args)?;
    opaque_result(cidr_from_text(string_arg(&*text)?, "cidr")?)
}

fn is_cidr(text: &CelString<'_>) -> CelBool {
    parse_cidr(text).is_ok().into()
}

fn cidr_has_ip_text<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [cidr, text] = take(args)?;
    // Upstream hands the parse error to the `IP` overload, which reports it as no overload for its arguments.
    let ip = parse_ip(string_arg(&*text)?).map_err(|_| {
        ExecutionError::no_such_member_overload("containsIP", vec![CIDR_TYPE.to_owned(), "string".to_owned()])
    })?;
    owned(CelBool::from(cidr_arg(&*cidr)?.contains_ip(&ip)))
}

fn cidr_contains_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [cidr, ip] = take(args)?;
    owned(CelBool::from(cidr_arg(&*cidr)?.contains_ip(&ip_arg(&*ip)?)))
}

fn cidr_has_cidr_text<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [cidr, text] = take(args)?;
    let other = cidr_from_text(string_arg(&*text)?, "containsCIDR")?;
    owned(CelBool::from(cidr_arg(&*cidr)?.contains_cidr(&other)))
}

fn cidr_contains_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [cidr, other] = take(args)?;
    owned(CelBool::from(cidr_arg(&*cidr)?.contains_cidr(&cidr_arg(&*other)?)))
}

fn cidr_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [cidr] = take(args)?;
    opaque_result(cidr_arg(&*cidr)?.address)
}

fn cidr_prefix_length<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [cidr] = take(args)?;
    owned(CelInt::from(i64::from(cidr_arg(&*cidr)?.bits)))
}

fn cidr_masked<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [cidr] = take(args)?;
    opaque_result(cidr_arg(&*cidr)?.masked())
}

fn cidr_to_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [cidr] = take(args)?;
    owned(CelString::from(cidr_arg(&*cidr)?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{
        assert_error, assert_false, assert_no_overload, assert_true, assert_value, error_message,
    };

    #[test]
    fn cidr_parses_as_go() {
        assert_true("cidr(dyn('192.168.0.0/24')) == cidr('192.168.0.0/24')");
        assert_true("type(cidr('192.168.0.0/24')) == net.CIDR");
        assert_no_overload("cidr(192168)");
        let twice = "network address parse error during conversion from string: \
                     network address parse error during conversion from string: ";
        assert_error(
            "cidr('192.168.0.0/')",
            &format!("{twice}netip.ParsePrefix(\"192.168.0.0/\"): bad bits after slash: \"\""),
        );
        assert_error(
            "cidr('2001:db8::/')",
            &format!("{twice}netip.ParsePrefix(\"2001:db8::/\"): bad bits after slash: \"\""),
        );
        assert_error(
            "cidr('10.0.0.0/33')",
            &format!("{twice}netip.ParsePrefix(\"10.0.0.0/33\"): prefix length out of range"),
        );
        assert_error(
            "cidr('10.0.0.0/08')",
            &format!("{twice}netip.ParsePrefix(\"10.0.0.0/08\"): bad bits after slash: \"08\""),
        );
        assert_error("cidr('10.0.0.0')", &format!("{twice}netip.ParsePrefix(\"10.0.0.0\"): no '/'"));
        assert_error(
            "cidr('10.0.0.256/8')",
            &format!(
                "{twice}netip.ParsePrefix(\"10.0.0.256/8\"): ParseAddr(\"10.0.0.256\"): IPv4 field has value >255"
            ),
        );
        assert_error(
            "cidr('fe80::%eth0/64')",
            &format!("{twice}netip.ParsePrefix(\"fe80::%eth0/64\"): IPv6 zones cannot be present in a prefix"),
        );
        assert_error(
            "cidr('::ffff:1.2.3.4/120')",
            "network address parse error during conversion from string: \
             IPv4-mapped IPv6 address \"::ffff:1.2.3.4/120\" is not allowed",
        );
        assert_true("isCIDR('192.168.0.0/16') && isCIDR('::1/128') && isCIDR('192.168.0.1/16') && isCIDR('0.0.0.0/0')");
        assert_false("isCIDR('192.168.0.0/33') || isCIDR('::1/129') || isCIDR('::ffff:1.2.3.4/120')");
    }

    #[test]
    fn cidr_containment() {
        assert_true("cidr('192.168.0.0/24').containsIP(ip('192.168.0.1'))");
        assert_false("cidr('192.168.0.0/24').containsIP(ip('192.168.1.1'))");
        assert_true("cidr('192.168.0.0/24').containsIP('192.168.0.1')");
        assert_false("cidr('192.168.0.0/24').containsIP('192.168.1.1')");
        assert_true("cidr('192.168.0.1/24').containsIP('192.168.0.200')");
        assert_false("cidr('0.0.0.0/0').containsIP('::1')");
        assert_true("cidr('2001:db8::/32').containsIP(ip('2001:db8::1'))");
        assert_false("cidr('2001:db8::/32').containsIP('2001:dc8::1')");
        assert_true("cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.0/25'))");
        assert_false("cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.0/23'))");
        assert_true("cidr('192.168.0.0/24').containsCIDR('192.168.0.0/25')");
        assert_false("cidr('192.168.0.0/24').containsCIDR('192.168.0.0/23')");
        assert_true("cidr('192.168.0.0/16').containsCIDR(cidr('192.168.10.0/24'))");
        assert_true("cidr('192.168.0.0/16').containsCIDR('192.168.0.1/32')");
        assert_false("cidr('192.168.1.0/24').containsCIDR('192.168.2.0/24')");
        assert_true("cidr('2001:db8::/32').containsCIDR('2001:db8::/33')");
        assert_false("cidr('2001:db8::/32').containsCIDR('2001:db8::/31')");
        assert_false("cidr('::/0').containsCIDR('10.0.0.0/8')");
        // Upstream's string overload of `containsIP` reports no overload for a string that is no IP, while that of
        // `containsCIDR` reports why the string is no CIDR.
        assert_no_overload("cidr('10.0.0.0/8').containsIP('10.0.0')");
        let message = error_message("cidr('10.0.0.0/8').containsCIDR('10.0.0.0/40')");
        assert!(message.ends_with("prefix length out of range"), "{message}");
    }

    #[test]
    fn cidr_parts() {
        assert_true("cidr('192.168.0.0/24').ip() == ip('192.168.0.0')");
        assert_true("cidr('192.168.0.1/24').ip() == ip('192.168.0.1')");
        assert_value("cidr('192.168.0.1/24').ip().family()", 4);
        assert_value("cidr('::1/128').ip().family()", 6);
        assert_true("cidr('192.168.0.0/24').masked() == cidr('192.168.0.0/24')");
        assert_true("cidr('192.168.0.1/24').masked() == cidr('192.168.0.0/24')");
        assert_true("cidr('192.168.0.0/24') == cidr('192.168.0.0/24').masked()");
        assert_false("cidr('192.168.0.1/24') == cidr('192.168.0.1/24').masked()");
        assert_true("cidr('2001:db8:1::/32').masked() == cidr('2001:db8::/32')");
        assert_true("cidr('10.255.255.255/13').masked() == cidr('10.248.0.0/13')");
        assert_value("cidr('192.168.0.0/16').prefixLength()", 16);
        assert_value("cidr('::1/128').prefixLength()", 128);
        assert_value("string(cidr('192.168.0.0/24'))", "192.168.0.0/24");
        assert_value("string(cidr('2001:DB8::1/64'))", "2001:db8::1/64");
        assert_value("string(cidr('2001:DB8::1/64').masked())", "2001:db8::/64");
    }
}
