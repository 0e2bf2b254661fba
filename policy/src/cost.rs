//! The cost bound of CEL conditions: a static worst-case estimate, made
//! when a condition is compiled, of how many steps it can take on
//! arguments of up to [`MAX_ARGUMENT_BYTES`].
//!
//! The interpreter has no meter to stop a runaway evaluation, so a
//! condition that could run away is refused before it ever runs. The
//! estimate is a polynomial in the arguments' size `A` (the size of
//! `args`, and of `tool`), with one variable per enclosing comprehension
//! for the size of its element and one for its accumulator. A loop sums
//! its body over its elements: a term that grows with the element sums to
//! the size of the whole list (the elements of a list add up to the list),
//! a term that does not is paid once per element. So
//! `args.to.all(r, r.endsWith('x'))` is linear in `A`, while
//! `args.a.exists(x, args.b.exists(y, x == y))` or
//! `args.l.all(x, args.s.contains(x))` is quadratic. A condition is refused
//! when its cost grows faster than linearly in `A`, or when it exceeds
//! [`COST_LIMIT`] steps at `A` = [`MAX_ARGUMENT_BYTES`] (a constant that
//! multiplies: a replace of a replace of a replace, loops nested ten deep
//! over literal lists).
//!
//! Sizes are upper bounds in bytes and elements: a string's bytes, a
//! list's or map's elements plus theirs. Each node evaluated costs
//! [`NODE_COST`] steps; copying, scanning or comparing a value costs its
//! size.

use cel::IdedExpr;
use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, LiteralValue, operators};
use std::collections::BTreeMap;

/// The largest arguments (canonical JSON size, roughly: string bytes plus
/// one per value) conditions may read: the gateway's request body limit.
/// Larger arguments fail a condition that reads them (fail closed).
pub(crate) const MAX_ARGUMENT_BYTES: usize = 1 << 20;

/// The most steps a condition may take at its worst on arguments of
/// [`MAX_ARGUMENT_BYTES`]: a few seconds of CPU at the very worst, on
/// adversarial arguments; ordinary conditions estimate thousands of times
/// less.
pub(crate) const COST_LIMIT: f64 = (1u64 << 31) as f64;

/// Steps for evaluating one node of the expression.
const NODE_COST: f64 = 10.0;

/// A polynomial bigger than this is refused as too complex to bound.
const MAX_TERMS: usize = 256;

/// Why a condition is refused.
pub(crate) type Refusal = String;

// === Poly: polynomial upper bounds ===

/// Σ coefficient × Π variable^exponent, with non-negative coefficients.
/// Variable 0 is `A`; comprehension `d` (1 = outermost) has its element at
/// `2d - 1` and its accumulator at `2d`.
#[derive(Clone, Debug, Default, PartialEq)]
struct Poly(BTreeMap<Vec<u16>, f64>);

const A: usize = 0;

fn element_var(depth: usize) -> usize {
    2 * depth - 1
}

fn accumulator_var(depth: usize) -> usize {
    2 * depth
}

impl Poly {
    fn constant(c: f64) -> Self {
        let mut p = Self::default();
        if c > 0.0 {
            p.0.insert(Vec::new(), c);
        }
        p
    }

    fn var(i: usize) -> Self {
        let mut exponents = vec![0; i + 1];
        exponents[i] = 1;
        Self(BTreeMap::from([(exponents, 1.0)]))
    }

    fn add(&self, other: &Self) -> Self {
        let mut sum = self.clone();
        for (m, c) in &other.0 {
            *sum.0.entry(m.clone()).or_insert(0.0) += c;
        }
        sum
    }

    fn scale(&self, k: f64) -> Self {
        Self(self.0.iter().map(|(m, c)| (m.clone(), c * k)).collect())
    }

    fn mul(&self, other: &Self) -> Result<Self, Refusal> {
        let mut product = Self::default();
        for (m1, c1) in &self.0 {
            for (m2, c2) in &other.0 {
                let mut m = vec![0u16; m1.len().max(m2.len())];
                for (i, e) in m1.iter().enumerate() {
                    m[i] = m[i].saturating_add(*e);
                }
                for (i, e) in m2.iter().enumerate() {
                    m[i] = m[i].saturating_add(*e);
                }
                *product.0.entry(m).or_insert(0.0) += c1 * c2;
            }
        }
        if product.0.len() > MAX_TERMS {
            return Err("the expression is too complex to bound its cost".into());
        }
        Ok(product)
    }

    fn pow(&self, e: u16) -> Result<Self, Refusal> {
        let mut p = Self::constant(1.0);
        for _ in 0..e {
            p = p.mul(self)?;
        }
        Ok(p)
    }

    fn exponent(m: &[u16], var: usize) -> u16 {
        m.get(var).copied().unwrap_or(0)
    }

    fn without(m: &[u16], var: usize) -> Vec<u16> {
        let mut m = m.to_vec();
        if var < m.len() {
            m[var] = 0;
        }
        while m.last() == Some(&0) {
            m.pop();
        }
        m
    }

    /// Replaces `var` by `value` (an upper bound for it).
    fn substitute(&self, var: usize, value: &Self) -> Result<Self, Refusal> {
        let mut out = Self::default();
        for (m, c) in &self.0 {
            let e = Self::exponent(m, var);
            let rest = Self(BTreeMap::from([(Self::without(m, var), *c)]));
            out = out.add(&if e == 0 {
                rest
            } else {
                rest.mul(&value.pow(e)?)?
            });
        }
        Ok(out)
    }

    /// Σ over the elements of a range of size `range` of a per-element
    /// bound in which `var` is the element's size. The elements add up to
    /// at most `range`, and there are at most `range` of them: a term with
    /// `var^e` (e ≥ 1) sums to at most `range^e`, a term without `var` is
    /// paid `range` times.
    fn sum_over(&self, var: usize, range: &Self) -> Result<Self, Refusal> {
        let mut out = Self::default();
        for (m, c) in &self.0 {
            let e = Self::exponent(m, var);
            let rest = Self(BTreeMap::from([(Self::without(m, var), *c)]));
            out = out.add(&rest.mul(&range.pow(e.max(1))?)?);
        }
        Ok(out)
    }

    /// The highest total degree: every variable left is bounded by `A`.
    fn degree(&self) -> u16 {
        self.0
            .keys()
            .map(|m| m.iter().fold(0u16, |d, e| d.saturating_add(*e)))
            .max()
            .unwrap_or(0)
    }

    /// The value at `A = a`; any variable left is taken as `a` too.
    fn at(&self, a: f64) -> f64 {
        self.0
            .iter()
            .map(|(m, c)| c * m.iter().map(|&e| a.powi(i32::from(e))).product::<f64>())
            .sum()
    }
}

// === Estimate ===

/// Worst-case cost of evaluating a node, and size of its value.
#[derive(Clone, Debug, Default)]
struct Estimate {
    cost: Poly,
    size: Poly,
}

enum Binding {
    Element(Poly),
    Accumulator(Poly),
}

#[derive(Default)]
struct Estimator<'e> {
    scopes: Vec<(&'e str, Binding)>,
    depth: usize,
}

/// Refuses a condition whose worst case is superlinear in the arguments
/// or above [`COST_LIMIT`]; otherwise returns the estimate at
/// [`MAX_ARGUMENT_BYTES`].
pub(crate) fn check(expression: &IdedExpr) -> Result<f64, Refusal> {
    let estimate = Estimator::default().estimate(expression)?;
    let cost = estimate.cost;
    if cost.degree() >= 2 {
        return Err(format!(
            "its worst case grows with the {} power of the arguments' size (a loop over the arguments inside another, or a whole argument scanned, copied or replaced into a string once per element of another)",
            match cost.degree() {
                2 => "second".to_owned(),
                3 => "third".to_owned(),
                n => format!("{n}th"),
            }
        ));
    }
    let worst = cost.at(MAX_ARGUMENT_BYTES as f64);
    // NaN (an overflow of infinities) is refused too.
    if worst.is_nan() || worst > COST_LIMIT {
        return Err(format!(
            "its worst case is about {worst:.1e} steps on arguments of {} KiB, above the limit of {COST_LIMIT:.1e} (values that multiply: nested loops over lists, a replace of a replace, ...)",
            MAX_ARGUMENT_BYTES >> 10
        ));
    }
    Ok(worst)
}

impl<'e> Estimator<'e> {
    fn estimate(&mut self, e: &'e IdedExpr) -> Result<Estimate, Refusal> {
        let node = Poly::constant(NODE_COST);
        Ok(match &e.expr {
            Expr::Unspecified => Estimate {
                cost: node,
                size: Poly::constant(1.0),
            },
            Expr::Literal(literal) => Estimate {
                cost: node,
                size: Poly::constant(match literal {
                    LiteralValue::String(s) => s.inner().len().max(1) as f64,
                    LiteralValue::Bytes(b) => b.inner().len().max(1) as f64,
                    _ => 1.0,
                }),
            },
            Expr::Ident(name) => Estimate {
                cost: node,
                size: self.ident(name),
            },
            Expr::Select(select) => {
                let operand = self.estimate(&select.operand)?;
                Estimate {
                    cost: operand.cost.add(&node),
                    size: if select.test {
                        Poly::constant(1.0)
                    } else {
                        operand.size
                    },
                }
            }
            Expr::List(list) => self.all(list.elements.iter())?,
            Expr::Map(map) => self.entries(&map.entries)?,
            Expr::Struct(s) => self.entries(&s.entries)?,
            Expr::Call(call) => self.call(call)?,
            Expr::Comprehension(c) => self.comprehension(c)?,
        })
    }

    fn ident(&self, name: &str) -> Poly {
        if let Some((_, binding)) = self.scopes.iter().rev().find(|(n, _)| *n == name) {
            return match binding {
                Binding::Element(p) | Binding::Accumulator(p) => p.clone(),
            };
        }
        match name {
            // Both come from the request: bounded by the arguments' limit.
            "args" | "tool" => Poly::var(A),
            // Two DNS labels.
            "agent" => Poly::constant(128.0),
            _ => Poly::constant(1.0),
        }
    }

    fn is_accumulator(&self, e: &IdedExpr) -> bool {
        let Expr::Ident(name) = &e.expr else {
            return false;
        };
        matches!(
            self.scopes.iter().rev().find(|(n, _)| n == name),
            Some((_, Binding::Accumulator(_)))
        )
    }

    /// A list (or the parts of a map or struct): every part once, the
    /// value as big as its parts plus one per element.
    fn all(&mut self, parts: impl Iterator<Item = &'e IdedExpr>) -> Result<Estimate, Refusal> {
        let mut total = Estimate {
            cost: Poly::constant(NODE_COST),
            size: Poly::default(),
        };
        for part in parts {
            let p = self.estimate(part)?;
            total.cost = total.cost.add(&p.cost);
            total.size = total.size.add(&p.size).add(&Poly::constant(1.0));
        }
        Ok(total)
    }

    fn entries(
        &mut self,
        entries: &'e [cel::common::ast::IdedEntryExpr],
    ) -> Result<Estimate, Refusal> {
        let parts = entries.iter().flat_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
            EntryExpr::StructField(f) => vec![&f.value],
        });
        self.all(parts)
    }

    fn call(&mut self, call: &'e CallExpr) -> Result<Estimate, Refusal> {
        let mut inputs = Vec::with_capacity(call.args.len() + 1);
        if let Some(target) = &call.target {
            inputs.push(self.estimate(target)?);
        }
        for arg in &call.args {
            inputs.push(self.estimate(arg)?);
        }
        let cost = inputs
            .iter()
            .fold(Poly::constant(NODE_COST), |c, i| c.add(&i.cost));
        let sizes: Vec<&Poly> = inputs.iter().map(|i| &i.size).collect();
        let total = sizes.iter().fold(Poly::default(), |s, p| s.add(p));
        let size_of = |i: usize| sizes.get(i).map_or_else(Poly::default, |p| (*p).clone());
        let one = Poly::constant(1.0);
        let word = Poly::constant(16.0);
        // (size of the result, work beyond evaluating the inputs)
        let (size, work) = match call.func_name.as_str() {
            operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::NOT_STRICTLY_FALSE => (one, Poly::default()),
            operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS => (one, total),
            operators::CONDITIONAL => (size_of(1).add(&size_of(2)), Poly::default()),
            operators::ADD => {
                // `@result + [x]` in map and filter appends in place.
                let work = if call.args.first().is_some_and(|a| self.is_accumulator(a)) {
                    size_of(1)
                } else {
                    total.clone()
                };
                (total, work)
            }
            operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | operators::NEGATE => (word, one),
            operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT => {
                (size_of(0), size_of(1).add(&one))
            }
            operators::IN => (one, size_of(0).add(&size_of(1).scale(2.0))),
            "size" => (word, total),
            "contains" | "startsWith" | "endsWith" | "indexOf" | "lastIndexOf" => (word, total),
            "matches" => {
                // Compiling the pattern and matching: |pattern| × |text|.
                let (text, pattern) = (size_of(0), size_of(1));
                (one, text.mul(&pattern)?.add(&pattern).add(&text))
            }
            "replace" => {
                // Every character of `s` may become `to`.
                let (s, from, to) = (size_of(0), size_of(1), size_of(2));
                let size = s.mul(&to.add(&one))?.add(&to);
                let work = size.add(&from).add(&s);
                (size, work)
            }
            "join" => {
                // A separator between every two elements.
                let (list, separator) = (size_of(0), size_of(1));
                let size = list.add(&list.mul(&separator)?);
                (size.clone(), size)
            }
            "split" => (size_of(0).scale(2.0).add(&word), total),
            "format" => {
                // Each clause formats one element; a number may take a
                // precision of up to 100 digits, hex doubles a string.
                let (template, list) = (size_of(0), size_of(1));
                let size = template.scale(121.0).add(&list.scale(2.0));
                (size.clone(), size)
            }
            // Conversions and string functions (lowerAscii, trim, quote,
            // substring, string(), ...): at most twice their input.
            _ => (total.scale(2.0).add(&word), total),
        };
        Ok(Estimate {
            cost: cost.add(&work),
            size,
        })
    }

    fn comprehension(&mut self, c: &'e ComprehensionExpr) -> Result<Estimate, Refusal> {
        let range = self.estimate(&c.iter_range)?;
        let init = self.estimate(&c.accu_init)?;
        self.depth += 1;
        let (x, z) = (element_var(self.depth), accumulator_var(self.depth));
        let scopes = self.scopes.len();
        self.scopes
            .push((&c.iter_var, Binding::Element(Poly::var(x))));
        if let Some(second) = &c.iter_var2 {
            self.scopes.push((second, Binding::Element(Poly::var(x))));
        }
        self.scopes
            .push((&c.accu_var, Binding::Accumulator(Poly::var(z))));
        let body = (|| {
            let cond = self.estimate(&c.loop_cond)?;
            let step = self.estimate(&c.loop_step)?;
            let result = self.estimate(&c.result)?;
            Ok::<_, Refusal>((cond, step, result))
        })();
        self.scopes.truncate(scopes);
        self.depth -= 1;
        let (cond, step, result) = body?;
        // The accumulator: where it started, plus what each step adds
        // to it (the step's size without the accumulator itself).
        let growth = step.size.substitute(z, &Poly::default())?;
        let accumulator = init.size.add(&growth.sum_over(x, &range.size)?);
        let per_element = cond
            .cost
            .add(&step.cost)
            .add(&Poly::constant(NODE_COST))
            .substitute(z, &accumulator)?;
        let looping = per_element.sum_over(x, &range.size)?;
        Ok(Estimate {
            cost: range
                .cost
                .add(&init.cost)
                .add(&looping)
                .add(&result.cost.substitute(z, &accumulator)?),
            size: result.size.substitute(z, &accumulator)?,
        })
    }
}
