//! The quantity library: `quantity`, `isQuantity`, `sign` (global, as upstream declares it, and as a member),
//! `isInteger`, `asInteger`, `asApproximateFloat`, `add`, `sub`, `isLessThan`, `isGreaterThan`, `compareTo`, and
//! `==` by value, on `kubernetes.Quantity` ([`Quantity`]), with upstream's parsing of quantity strings and its
//! messages. A quantity is exact within an `i128` mantissa (38 digits) and a base-10 exponent, where upstream's is
//! unbounded: parsing a number of more than 38 significant digits, and a sum whose exact digits would not fit, fail
//! with an error instead, and `asApproximateFloat` may differ from upstream in the last bit for quantities that
//! upstream keeps as an `inf.Dec`.

use std::cmp::Ordering;

use cel::common::types::{CelBool, CelDouble, CelInt, CelString, INT_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError};

use super::{opaque_arg, opaque_result, opaque_type, owned, string_arg, take, unexpected, Returned};

const QUANTITY_TYPE: &str = "kubernetes.Quantity";

const QUANTITY_FORMAT_WRONG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const QUANTITY_NUMERIC: &str = "unable to parse numeric part of quantity";
const QUANTITY_SUFFIX: &str = "unable to parse quantity's suffix";
/// Where this implementation's exact arithmetic stops short of upstream's unbounded one.
const QUANTITY_OUT_OF_RANGE: &str = "quantity exceeds the supported precision (38 significant digits)";

/// A Kubernetes resource quantity (`kubernetes.Quantity`), as `resource.Quantity` holds it: either an `i64` times a
/// power of ten, or an exact decimal. The two forms matter beyond the value only to `isInteger` and `asInteger`,
/// which upstream answers from the first form alone (so `quantity('1.5Gi').isInteger()` is false).
#[derive(Clone, Copy, Debug)]
pub struct Quantity(Amount);

#[derive(Clone, Copy, Debug)]
enum Amount {
    /// `value × 10^scale`: upstream's `int64Amount`, the form of most parsed quantities and of their sums.
    Scaled { value: i64, scale: i32 },
    /// Upstream's `inf.Dec` fallback: quantities with more than 18 digits, below a nano, with a fractional binary
    /// suffix, and sums that overflow the first form.
    Exact(Decimal),
}

/// `mantissa × 10^exponent`, kept without trailing zeros in the mantissa (and zero as `0 × 10^0`), so that equal
/// values are equal structs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Decimal {
    mantissa: i128,
    exponent: i64,
}

impl Decimal {
    const ZERO: Decimal = Decimal { mantissa: 0, exponent: 0 };

    fn new(mut mantissa: i128, mut exponent: i64) -> Decimal {
        if mantissa == 0 {
            return Decimal::ZERO;
        }
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        Decimal { mantissa, exponent }
    }

    fn signum(&self) -> i64 {
        self.mantissa.signum() as i64
    }

    fn cmp(&self, other: &Decimal) -> Ordering {
        let by_sign = self.signum().cmp(&other.signum());
        if by_sign != Ordering::Equal || self.mantissa == 0 {
            return by_sign;
        }
        let by_magnitude = Decimal::cmp_magnitude(self, other);
        if self.mantissa < 0 {
            by_magnitude.reverse()
        } else {
            by_magnitude
        }
    }

    /// Compares the absolute values by their digits, so that no exponent, however far apart, overflows anything.
    fn cmp_magnitude(a: &Decimal, b: &Decimal) -> Ordering {
        let (a_digits, b_digits) = (a.mantissa.unsigned_abs().to_string(), b.mantissa.unsigned_abs().to_string());
        let a_top = a_digits.len() as i64 + a.exponent;
        let b_top = b_digits.len() as i64 + b.exponent;
        // Same leading position: without trailing zeros, the digit strings compare as the numbers do.
        a_top.cmp(&b_top).then_with(|| a_digits.as_bytes().cmp(b_digits.as_bytes()))
    }

    fn checked_add(self, other: Decimal) -> Option<Decimal> {
        if self.mantissa == 0 {
            return Some(other);
        }
        if other.mantissa == 0 {
            return Some(self);
        }
        let (low, high) = if self.exponent <= other.exponent { (self, other) } else { (other, self) };
        let shift = u32::try_from(high.exponent - low.exponent).ok()?;
        let aligned = high.mantissa.checked_mul(10i128.checked_pow(shift)?)?;
        Some(Decimal::new(aligned.checked_add(low.mantissa)?, low.exponent))
    }

    fn checked_neg(self) -> Option<Decimal> {
        Some(Decimal { mantissa: self.mantissa.checked_neg()?, exponent: self.exponent })
    }

    /// The nearest `f64`, `±Inf` beyond its range.
    fn to_f64(self) -> f64 {
        format!("{}e{}", self.mantissa, self.exponent).parse().unwrap_or(f64::NAN)
    }

    /// Rounds away from zero to a multiple of 10^-9, as upstream rounds every parsed quantity: "if you want some
    /// resources, you should get some".
    fn round_up_to_nano(self) -> Decimal {
        if self.exponent >= -9 {
            return self;
        }
        let magnitude = self.mantissa.unsigned_abs();
        let rounded = match u32::try_from(-9 - self.exponent).ok().and_then(|shift| 10u128.checked_pow(shift)) {
            Some(divisor) => magnitude / divisor + u128::from(!magnitude.is_multiple_of(divisor)),
            None => 1,
        };
        // `rounded` is at most the magnitude, which came from an i128.
        let rounded = i128::try_from(rounded).unwrap_or(i128::MAX);
        Decimal::new(if self.mantissa < 0 { -rounded } else { rounded }, -9)
    }
}

impl Quantity {
    fn value(&self) -> Decimal {
        match self.0 {
            Amount::Scaled { value, scale } => Decimal::new(value.into(), scale.into()),
            Amount::Exact(decimal) => decimal,
        }
    }

    fn sign(&self) -> i64 {
        self.value().signum()
    }

    fn cmp(&self, other: &Quantity) -> Ordering {
        self.value().cmp(&other.value())
    }

    /// Upstream's `AsInt64`: only a scaled amount with a non-negative scale converts.
    fn as_i64(&self) -> Option<i64> {
        match self.0 {
            Amount::Scaled { value, scale } => match scale.cmp(&0) {
                Ordering::Equal => Some(value),
                Ordering::Less => None,
                Ordering::Greater => scale_up(value, i64::from(scale)),
            },
            Amount::Exact(_) => None,
        }
    }

    /// Upstream's `AsApproximateFloat64`, which multiplies by Go's `math.Pow10`: reproduced so that the result is
    /// the same to the bit for scaled amounts.
    fn approximate_f64(&self) -> f64 {
        match self.0 {
            Amount::Scaled { value, scale: 0 } => value as f64,
            Amount::Scaled { value, scale } => value as f64 * go_pow10(scale),
            Amount::Exact(decimal) => decimal.to_f64(),
        }
    }

    fn add(&self, other: &Quantity) -> Result<Quantity, ExecutionError> {
        if let (Amount::Scaled { value: a, scale: a_scale }, Amount::Scaled { value: b, scale: b_scale }) =
            (self.0, other.0)
        {
            if let Some((value, scale)) = add_scaled((a, a_scale), (b, b_scale)) {
                return Ok(Quantity(Amount::Scaled { value, scale }));
            }
        }
        let sum = self.value().checked_add(other.value());
        sum.map(|sum| Quantity(Amount::Exact(sum))).ok_or_else(|| quantity_out_of_range("add"))
    }

    /// Upstream's `Sub`: the difference of scaled amounts when it fits, else the exact one.
    fn sub(&self, other: &Quantity) -> Result<Quantity, ExecutionError> {
        if let (Amount::Scaled { value: a, scale: a_scale }, Amount::Scaled { value: b, scale: b_scale }) =
            (self.0, other.0)
        {
            if let Some((value, scale)) = b.checked_neg().and_then(|b| add_scaled((a, a_scale), (b, b_scale))) {
                return Ok(Quantity(Amount::Scaled { value, scale }));
            }
        }
        let difference = other.value().checked_neg().and_then(|negated| self.value().checked_add(negated));
        difference.map(|difference| Quantity(Amount::Exact(difference))).ok_or_else(|| quantity_out_of_range("sub"))
    }

    fn from_int(value: i64) -> Quantity {
        Quantity(Amount::Scaled { value, scale: 0 })
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        QUANTITY_TYPE
    }
}

fn quantity_out_of_range(function: &str) -> ExecutionError {
    ExecutionError::function_error(function, QUANTITY_OUT_OF_RANGE)
}

/// `value × 10^scale`, if it fits an `i64`.
fn scale_up(value: i64, scale: i64) -> Option<i64> {
    if value == 0 {
        return Some(0);
    }
    value.checked_mul(10i64.checked_pow(u32::try_from(scale).ok()?)?)
}

/// Upstream's `int64Amount.Add`: the sum at the smaller scale, or `None` when it overflows (and upstream falls back
/// to `inf.Dec`).
fn add_scaled(a: (i64, i32), b: (i64, i32)) -> Option<(i64, i32)> {
    if b.0 == 0 {
        return Some(a);
    }
    if a.0 == 0 {
        return Some(b);
    }
    match a.1.cmp(&b.1) {
        Ordering::Equal => Some((a.0.checked_add(b.0)?, a.1)),
        Ordering::Greater => Some((scale_up(a.0, i64::from(a.1) - i64::from(b.1))?.checked_add(b.0)?, b.1)),
        Ordering::Less => Some((a.0.checked_add(scale_up(b.0, i64::from(b.1) - i64::from(a.1))?)?, a.1)),
    }
}

/// Go's `math.Pow10`, whose products of table entries are not always the nearest `f64` to 10^n.
fn go_pow10(n: i32) -> f64 {
    const POW10: [f64; 32] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29, 1e30, 1e31,
    ];
    const POW10_POSITIVE_32: [f64; 10] = [1e0, 1e32, 1e64, 1e96, 1e128, 1e160, 1e192, 1e224, 1e256, 1e288];
    const POW10_NEGATIVE_32: [f64; 11] =
        [1e-0, 1e-32, 1e-64, 1e-96, 1e-128, 1e-160, 1e-192, 1e-224, 1e-256, 1e-288, 1e-320];
    match n {
        0..=308 => POW10_POSITIVE_32[n as usize / 32] * POW10[n as usize % 32],
        -323..=-1 => POW10_NEGATIVE_32[n.unsigned_abs() as usize / 32] / POW10[n.unsigned_abs() as usize % 32],
        n if n > 0 => f64::INFINITY,
        _ => 0.0,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum QuantityFormat {
    DecimalExponent,
    DecimalSi,
    BinarySi,
}

/// A quantity string split as upstream's scanner splits it.
struct ScannedQuantity<'a> {
    positive: bool,
    /// Whether the number has at least one digit (`.` alone has none).
    has_digits: bool,
    /// The integer digits without leading zeros, `"0"` when there are none.
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

/// Upstream's `parseQuantityString`, a scanner more permissive than the grammar: what it lets through, the suffix
/// interpretation refuses.
fn scan_quantity(s: &str) -> Result<ScannedQuantity<'_>, &'static str> {
    let bytes = s.as_bytes();
    let end = bytes.len();
    let mut scanned = ScannedQuantity { positive: true, has_digits: true, num: "0", denom: "", suffix: "" };
    let mut pos = 0;
    match bytes.first() {
        Some(b'-') => {
            scanned.positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    let digits_start = pos;
    while pos < end && bytes[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Ok(scanned);
    }
    let num_start = pos;
    while pos < end && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos > num_start {
        scanned.num = &s[num_start..pos];
    }
    if pos >= end {
        return Ok(scanned);
    }
    if bytes[pos] == b'.' {
        pos += 1;
        let denom_start = pos;
        while pos < end && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        scanned.denom = &s[denom_start..pos];
    }
    // Upstream parses the number as a decimal only off its fast path, and finds out then that `.`, or a suffix
    // alone, is none.
    scanned.has_digits = s[digits_start..pos].bytes().any(|b| b.is_ascii_digit());
    if pos >= end {
        return Ok(scanned);
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&bytes[pos]) {
        pos += 1;
    }
    if pos < end && matches!(bytes[pos], b'-' | b'+') {
        pos += 1;
    }
    while pos < end && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(QUANTITY_FORMAT_WRONG);
    }
    scanned.suffix = &s[suffix_start..];
    Ok(scanned)
}

/// The base, exponent and format a suffix stands for.
fn interpret_quantity_suffix(suffix: &str) -> Option<(u32, i32, QuantityFormat)> {
    use QuantityFormat::{BinarySi, DecimalExponent, DecimalSi};
    let decimal = |exponent| Some((10, exponent, DecimalSi));
    let binary = |exponent| Some((2, exponent, BinarySi));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        // Go's `ParseInt(s, 10, 64)`, then truncated to 32 bits as upstream does.
        _ if suffix.len() > 1 && suffix.starts_with(['e', 'E']) => {
            suffix[1..].parse::<i64>().ok().map(|exponent| (10, exponent as i32, DecimalExponent))
        }
        _ => None,
    }
}

/// Upstream's `ParseQuantity`, with its errors' messages.
pub(super) fn parse_quantity(s: &str) -> Result<Quantity, &'static str> {
    if s.is_empty() {
        return Err(QUANTITY_FORMAT_WRONG);
    }
    if s == "0" {
        return Ok(Quantity(Amount::Scaled { value: 0, scale: 0 }));
    }
    let scanned = scan_quantity(s)?;
    let (base, exponent, format) = interpret_quantity_suffix(scanned.suffix).ok_or(QUANTITY_SUFFIX)?;
    let digit_count = (scanned.num.len() + scanned.denom.len()) as i64;

    // Upstream's fast path: a number of at most 18 digits, no finer than a nano, is kept as an `int64Amount`.
    let (precision, mut scale, multiplier) = match format {
        QuantityFormat::DecimalExponent | QuantityFormat::DecimalSi => (18 - digit_count, i64::from(exponent), 1),
        QuantityFormat::BinarySi if scanned.denom.is_empty() => {
            let precision = 15 - scanned.num.len() as i64 - i64::from(exponent) * 3 / 10 - 1;
            (precision, 0, 1i64 << exponent)
        }
        QuantityFormat::BinarySi => (-1, 0, 1),
    };
    if precision >= 0 {
        scale -= scanned.denom.len() as i64;
        if scale >= -9 {
            let shifted = format!("{}{}", scanned.num, scanned.denom);
            let value: i64 = shifted.parse().map_err(|_| QUANTITY_NUMERIC)?;
            if let (Some(result), Ok(scale)) = (value.checked_mul(multiplier), i32::try_from(scale)) {
                let value = if scanned.positive { result } else { -result };
                return Ok(Quantity(Amount::Scaled { value, scale }));
            }
        }
    }

    // The exact path: an exact decimal, rounded up to a nano, and binary quantities capped at 2^63-1.
    if !scanned.has_digits {
        return Err(QUANTITY_NUMERIC);
    }
    let digits = format!("{}{}", scanned.num, scanned.denom);
    let digits = digits.trim_start_matches('0');
    let fraction_digits = scanned.denom.len() as i64;
    let magnitude = if base == 10 {
        decimal_from_digits(digits, i64::from(exponent) - fraction_digits)?
    } else {
        binary_from_digits(digits, fraction_digits, exponent)?
    };
    let amount = if scanned.positive { magnitude } else { magnitude.checked_neg().ok_or(QUANTITY_NUMERIC)? };
    Ok(Quantity(Amount::Exact(amount)))
}

/// `digits × 10^exponent` rounded up to a nano; digits below the nano are rounded off before the conversion to
/// `i128`, so that only the digits kept count towards its limit.
fn decimal_from_digits(digits: &str, exponent: i64) -> Result<Decimal, &'static str> {
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        return Ok(Decimal::ZERO);
    }
    // The trailing zeros trimmed move into the exponent.
    let mut exponent = exponent + (digits.len() - significant.len()) as i64;
    let mut kept = significant;
    let mut round_up = false;
    if exponent < -9 {
        let cut = -9 - exponent;
        if cut >= kept.len() as i64 {
            return Ok(Decimal::new(1, -9));
        }
        let (head, tail) = kept.split_at(kept.len() - cut as usize);
        round_up = tail.bytes().any(|b| b != b'0');
        kept = head;
        exponent = -9;
    }
    if kept.len() > 38 {
        return Err(QUANTITY_NUMERIC);
    }
    let mantissa: i128 = if kept.is_empty() { 0 } else { kept.parse().map_err(|_| QUANTITY_NUMERIC)? };
    Ok(Decimal::new(mantissa + i128::from(round_up), exponent))
}

/// `digits / 10^fraction_digits × 2^power`, rounded up to a nano and capped at 2^63-1.
fn binary_from_digits(digits: &str, fraction_digits: i64, power: i32) -> Result<Decimal, &'static str> {
    const CAP: i128 = i64::MAX as i128;
    let trimmed = digits.trim_end_matches('0');
    // Trailing zeros of the fraction only shorten it; those of the integer part stay digits.
    let removable = (digits.len() - trimmed.len()).min(usize::try_from(fraction_digits).unwrap_or(0));
    let digits = &digits[..digits.len() - removable];
    let fraction_digits = fraction_digits - removable as i64;
    if digits.is_empty() {
        return Ok(Decimal::ZERO);
    }
    if digits.len() > 38 {
        return Err(QUANTITY_NUMERIC);
    }
    let mantissa: i128 = digits.parse().map_err(|_| QUANTITY_NUMERIC)?;
    let factor = 1i128 << power;
    let Some(scaled) = mantissa.checked_mul(factor) else {
        // Too many digits to be exact: fine when the integer part alone is beyond the cap.
        let integer_part = u32::try_from(fraction_digits)
            .ok()
            .and_then(|exponent| 10i128.checked_pow(exponent))
            .map_or(0, |divisor| mantissa / divisor);
        return match integer_part.checked_mul(factor) {
            Some(integer) if integer <= CAP => Err(QUANTITY_NUMERIC),
            _ => Ok(Decimal::new(CAP, 0)),
        };
    };
    let value = Decimal::new(scaled, -fraction_digits).round_up_to_nano();
    if value.cmp(&Decimal::new(CAP, 0)) == Ordering::Greater {
        return Ok(Decimal::new(CAP, 0));
    }
    Ok(value)
}

pub(super) fn register_quantity(env: &mut Env) -> Result<(), DeclarationError> {
    let quantity = || opaque_type(QUANTITY_TYPE);
    env.add_type(quantity())?;
    env.add_overload("quantity", "string_to_quantity", vec![STRING_TYPE], quantity_from_string)?;
    cel::add_overload!(env, fn is_quantity: (CelString<'_>) -> CelBool, id = "is_quantity_string")?;
    // Upstream declares `sign` as a global function, though its documentation calls it as a member: both work here.
    env.add_overload("sign", "quantity_sign", vec![quantity()], quantity_sign)?;
    env.add_member_overload("sign", "quantity_sign_member", quantity(), vec![], quantity_sign)?;
    env.add_member_overload("isGreaterThan", "quantity_is_greater_than", quantity(), vec![quantity()], q_greater)?;
    env.add_member_overload("isLessThan", "quantity_is_less_than", quantity(), vec![quantity()], q_less)?;
    env.add_member_overload("compareTo", "quantity_compare_to", quantity(), vec![quantity()], q_compare_to)?;
    env.add_member_overload("asApproximateFloat", "quantity_get_float", quantity(), vec![], q_approximate_float)?;
    env.add_member_overload("asInteger", "quantity_get_int", quantity(), vec![], q_as_integer)?;
    env.add_member_overload("isInteger", "quantity_is_integer", quantity(), vec![], q_is_integer)?;
    env.add_member_overload("add", "quantity_add", quantity(), vec![quantity()], q_add)?;
    env.add_member_overload("add", "quantity_add_int", quantity(), vec![INT_TYPE], q_add_int)?;
    env.add_member_overload("sub", "quantity_sub", quantity(), vec![quantity()], q_sub)?;
    env.add_member_overload("sub", "quantity_sub_int", quantity(), vec![INT_TYPE], q_sub_int)?;
    Ok(())
}

fn quantity_arg(value: &dyn Val) -> Result<Quantity, ExecutionError> {
    opaque_arg(value, QUANTITY_TYPE)
}

fn int_arg(value: &dyn Val) -> Result<i64, ExecutionError> {
    value.downcast_ref::<CelInt>().map(|i| *i.inner()).ok_or_else(|| unexpected(value, "int"))
}

fn quantity_from_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [text] = take(args)?;
    let quantity =
        parse_quantity(string_arg(&*text)?).map_err(|message| ExecutionError::function_error("quantity", message))?;
    opaque_result(quantity)
}

fn is_quantity(text: &CelString<'_>) -> CelBool {
    parse_quantity(text).is_ok().into()
}

fn quantity_sign<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [quantity] = take(args)?;
    owned(CelInt::from(quantity_arg(&*quantity)?.sign()))
}

fn quantity_pair(args: Vec<CowVal<'_, '_>>) -> Result<(Quantity, Quantity), ExecutionError> {
    let [this, other] = take(args)?;
    Ok((quantity_arg(&*this)?, quantity_arg(&*other)?))
}

fn q_greater<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let (this, other) = quantity_pair(args)?;
    owned(CelBool::from(this.cmp(&other) == Ordering::Greater))
}

fn q_less<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let (this, other) = quantity_pair(args)?;
    owned(CelBool::from(this.cmp(&other) == Ordering::Less))
}

fn q_compare_to<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let (this, other) = quantity_pair(args)?;
    owned(CelInt::from(this.cmp(&other) as i64))
}

fn q_approximate_float<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [quantity] = take(args)?;
    owned(CelDouble::from(quantity_arg(&*quantity)?.approximate_f64()))
}

fn q_as_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [quantity] = take(args)?;
    let value = quantity_arg(&*quantity)?
        .as_i64()
        .ok_or_else(|| ExecutionError::function_error("asInteger", "cannot convert value to integer"))?;
    owned(CelInt::from(value))
}

fn q_is_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [quantity] = take(args)?;
    owned(CelBool::from(quantity_arg(&*quantity)?.as_i64().is_some()))
}

fn q_add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let (this, other) = quantity_pair(args)?;
    opaque_result(this.add(&other)?)
}

fn q_add_int<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [this, other] = take(args)?;
    opaque_result(quantity_arg(&*this)?.add(&Quantity::from_int(int_arg(&*other)?))?)
}

fn q_sub<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let (this, other) = quantity_pair(args)?;
    opaque_result(this.sub(&other)?)
}

fn q_sub_int<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Returned<'b, 'v> {
    let [this, other] = take(args)?;
    opaque_result(quantity_arg(&*this)?.sub(&Quantity::from_int(int_arg(&*other)?))?)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_error, assert_false, assert_no_overload, assert_true, assert_value, eval};
    use super::*;

    #[test]
    fn quantity_parses_and_compares_by_value() {
        assert_true("quantity('1') == quantity('1000m')");
        assert_true("quantity('200M') == quantity('200M')");
        assert_true("quantity('200M') == quantity('0.2G') && quantity('0.2G') == quantity('200M')");
        assert_true("quantity('2M') == quantity('0.002G') && quantity('2000k') == quantity('2M')");
        assert_false("quantity('200M') == quantity('0.3G')");
        assert_true("quantity('1Ki') == quantity('1024')");
        assert_true("quantity('1.5Gi') == quantity('1536Mi')");
        assert_true("quantity('1e3') == quantity('1k') && quantity('1E-3') == quantity('1m')");
        assert_true("quantity('1e+3') == quantity('1k')");
        assert_true("quantity('.5') == quantity('500m') && quantity('5.') == quantity('5')");
        assert_true("quantity('+5') == quantity('5') && quantity('-5') != quantity('5')");
        assert_true("type(quantity('1')) == kubernetes.Quantity");
        assert_false("quantity('1') == 1");
    }

    #[test]
    fn quantity_rounds_up_to_a_nano_and_caps_binary_quantities() {
        assert_true("quantity('0.1n') == quantity('1n')");
        assert_true("quantity('1.5n') == quantity('2n')");
        assert_true("quantity('-0.1n') == quantity('-1n')");
        assert_true("quantity('1e-30') == quantity('1n')");
        assert_true("quantity('0.0000000000000000000000000000000000000000000001') == quantity('1n')");
        assert_true("quantity('16Ei') == quantity('9223372036854775807')");
        assert_true("quantity('-16Ei') == quantity('-9223372036854775807')");
        assert_true("quantity('0.5Ki') == quantity('512')");
        assert_true("quantity('0.3Ki') == quantity('307.2')");
    }

    #[test]
    fn quantity_errors_are_upstreams() {
        for expression in ["quantity('10Mo')", "quantity('abc')", "quantity('')", "quantity('1,3G')"] {
            assert_error(expression, QUANTITY_FORMAT_WRONG);
        }
        assert_error("quantity('10Mm')", "unable to parse quantity's suffix");
        assert_error("quantity('200K')", "unable to parse quantity's suffix");
        assert_error("quantity('.e-10')", "unable to parse numeric part of quantity");
        assert_error("quantity('e-10')", "unable to parse numeric part of quantity");
        assert_no_overload("quantity(1)");
        // As upstream's scanner has it, a suffix alone is zero.
        assert_true("quantity('Mi') == quantity('0') && quantity('.Mi') == quantity('0')");
    }

    #[test]
    fn is_quantity() {
        for valid in ["20", "20M", "20Mi", "1.3G", "1.3Gi", "10000k", "-1", "1e9"] {
            assert_true(&format!("isQuantity('{valid}')"));
        }
        for invalid in ["20Mo", "10Mm", "1,3G", "200K", "Three", ""] {
            assert_false(&format!("isQuantity('{invalid}')"));
        }
    }

    #[test]
    fn quantity_comparisons() {
        assert_true("quantity('50M').isLessThan(quantity('50Mi'))");
        assert_true("quantity('50M').isLessThan(quantity('100M'))");
        assert_false("quantity('100M').isLessThan(quantity('50M'))");
        assert_true("quantity('50Mi').isGreaterThan(quantity('50M'))");
        assert_true("quantity('150Mi').isGreaterThan(quantity('100Mi'))");
        assert_false("quantity('50M').isGreaterThan(quantity('100M'))");
        assert_value("quantity('200M').compareTo(quantity('0.2G'))", 0);
        assert_value("quantity('50M').compareTo(quantity('50Mi'))", -1);
        assert_value("quantity('50Mi').compareTo(quantity('50M'))", 1);
        assert_value("quantity('-1').compareTo(quantity('1n'))", -1);
        assert_value("quantity('-2').compareTo(quantity('-1'))", -1);
        assert_true("quantity('9999999999999999999999999999999999999G').isGreaterThan(quantity('16Ei'))");
        assert_true("quantity('1e-5').isLessThan(quantity('1e5000'))");
    }

    #[test]
    fn quantity_arithmetic() {
        assert_true("quantity('50k').add(quantity('20')) == quantity('50.02k')");
        assert_false("quantity('50k').add(20).isLessThan(quantity('50020'))");
        assert_true("quantity('50k').sub(quantity('20')) == quantity('49.98k')");
        assert_true("quantity('50k').sub(20) == quantity('49980')");
        assert_value("quantity('50k').add(20).sub(quantity('100k')).asInteger()", -49980);
        assert_value("quantity('50k').add(20).sub(quantity('100k')).sub(-50000).asInteger()", 20);
        assert_true("quantity('1.5Gi').add(quantity('0.5Gi')) == quantity('2Gi')");
        // Beyond an int64, exactly, as upstream's inf.Dec.
        assert_true("quantity('9223372036854775807').add(1) == quantity('9223372036854775808')");
        assert_true("quantity('-9223372036854775807').sub(2) == quantity('-9223372036854775809')");
        assert_true("quantity('1n').add(quantity('1E')) == quantity('1000000000000000000.000000001')");
        assert!(eval("quantity('1e30').add(quantity('1n'))").is_err(), "beyond 38 digits");
    }

    #[test]
    fn quantity_conversions() {
        assert_value("quantity('50k').asInteger()", 50000);
        assert_value("quantity('1Gi').asInteger()", 1073741824);
        assert_value("quantity('0').asInteger()", 0);
        assert_value("quantity('-3').asInteger()", -3);
        assert_error(
            "quantity('9999999999999999999999999999999999999G').asInteger()",
            "cannot convert value to integer",
        );
        assert_error("quantity('1.5').asInteger()", "cannot convert value to integer");
        assert_false("quantity('9999999999999999999999999999999999999G').isInteger()");
        assert_true("quantity('50').isInteger()");
        assert_true("quantity('50000000G').isInteger()");
        // Upstream answers from its internal form: a fractional binary quantity, or one written with a finer
        // scale than needed, is no integer to it.
        assert_false("quantity('1.5Gi').isInteger()");
        assert_false("quantity('1000m').isInteger()");
        assert_false("quantity('9223372036854775807').add(1).isInteger()");
        assert_value("quantity('50.703k').asApproximateFloat()", 50703.0);
        assert_value("quantity('50k').sub(20000).asApproximateFloat()", 30000.0);
        assert_value("quantity('1.5').asApproximateFloat()", 1.5);
        assert_value("quantity('1.5Gi').asApproximateFloat()", 1610612736.0);
        assert_value("quantity('1e400').asApproximateFloat()", f64::INFINITY);
    }

    #[test]
    fn quantity_sign() {
        assert_value("quantity('-1').sign()", -1);
        assert_value("sign(quantity('0'))", 0);
        assert_value("sign(quantity('5m'))", 1);
        assert_value("quantity('-0.1n').sign()", -1);
    }
}
