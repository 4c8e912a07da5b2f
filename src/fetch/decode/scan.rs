//! One pass over a page body: validates it as JSON and, on the way, finds
//! the records array's elements (each as the exact text received), each
//! element's primary key values, and the raw text at the job's pagination
//! pointers.
//!
//! The general path (`parse_body`, then a pointer descent per pointer, then
//! the array's elements, then one more scan per record for its key) reads
//! the body five or six times; this reads it once. It is an optimisation
//! only: whenever it meets something it does not handle exactly as the
//! general path does (invalid JSON, nesting over the limit, an escaped key
//! where a pointer looks, a records path that is missing or not an array,
//! more than 64 pointers), it answers None and the caller takes the general
//! path, which then produces the result or the error message it always
//! did. So it must accept only valid JSON (what serde_json accepts), and
//! what it finds must be what `raw_at` finds: the last member when a key
//! repeats, values without surrounding whitespace. Tests in `scan/tests.rs`
//! compare both paths on generated bodies.

use super::pointer::index;

/// Most levels of arrays and objects a page may nest. Real APIs stay far
/// below; a server that sends thousands of `[` is broken or hostile, and
/// serde_json would refuse it anyway at 128 with a vaguer message. Checked
/// before parsing, so the error says what happened.
pub const MAX_NESTING: usize = 100;

/// What one pass found.
#[derive(Debug, Default)]
pub(super) struct Scan<'a> {
    /// The raw text at each body pointer (index as given; the records
    /// pointer's own entry is the array).
    pub found: Vec<Option<&'a str>>,
    /// The records array's elements, as received.
    pub items: Vec<&'a str>,
    /// Per item, the raw text at each key pointer: `keys.len()` entries an
    /// item, in item order.
    pub keys: Vec<Option<&'a str>>,
}

/// A pointer as tokens, with each token's array index worked out once.
struct Pointer<'p> {
    tokens: &'p [String],
    indices: Vec<Option<usize>>,
}

impl<'p> Pointer<'p> {
    fn new(tokens: &'p [String]) -> Self {
        Pointer {
            tokens,
            indices: tokens.iter().map(|t| index(t)).collect(),
        }
    }
}

/// Which pointer set a value is walked with: the body's, or one record's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Set {
    Body,
    Key,
}

/// The set bits of `mask`, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let n = mask.trailing_zeros() as usize;
        mask &= mask.wrapping_sub(1);
        (n < 64).then_some(n)
    })
}

/// A bail-out: the general path takes over.
struct Bail;

type Step<T = ()> = Result<T, Bail>;

struct Walker<'a, 'p> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    body: Vec<Pointer<'p>>,
    keys: Vec<Pointer<'p>>,
    scan: Scan<'a>,
    /// `keys` has at least one pointer.
    has_keys: bool,
    /// The closing bytes of the containers `skip` is inside (kept to save
    /// an allocation per skipped container).
    stack: Vec<u8>,
}

/// Walk `text` once. `body[0]` is the records path; the others are the
/// pagination pointers. `keys` are looked up inside each record (an empty
/// list skips that). None: take the general path.
pub(super) fn scan<'a>(text: &'a str, body: &[&[String]], keys: &[&[String]]) -> Option<Scan<'a>> {
    if body.is_empty() || body.len() > 64 || keys.len() > 64 {
        return None;
    }
    let mut walker = Walker {
        text,
        bytes: text.as_bytes(),
        at: 0,
        body: body.iter().map(|t| Pointer::new(t)).collect(),
        keys: keys.iter().map(|t| Pointer::new(t)).collect(),
        scan: Scan {
            found: vec![None; body.len()],
            ..Scan::default()
        },
        has_keys: !keys.is_empty(),
        stack: Vec::with_capacity(MAX_NESTING),
    };
    let all = u64::MAX >> (64 - body.len());
    walker.whitespace();
    walker.value(Set::Body, all, 0, 0).ok()?;
    walker.whitespace();
    if walker.at != walker.bytes.len() {
        return None;
    }
    // The records path must lead to an array (else the general path says why).
    let array = walker.scan.found[0]?;
    if !array.starts_with('[') {
        return None;
    }
    Some(walker.scan)
}

impl<'a> Walker<'a, '_> {
    fn pointers(&self, set: Set) -> &[Pointer<'_>] {
        match set {
            Set::Body => &self.body,
            Set::Key => &self.keys,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Step {
        match self.peek() == Some(byte) {
            true => {
                self.at += 1;
                Ok(())
            }
            false => Err(Bail),
        }
    }

    /// Store the text of a value found at pointer `n` of `set`.
    fn record(&mut self, set: Set, n: usize, found: &'a str) {
        match set {
            Set::Body => self.scan.found[n] = Some(found),
            Set::Key => {
                let base = self.scan.keys.len() - self.keys.len();
                self.scan.keys[base + n] = Some(found);
            }
        }
    }

    /// A later member with the same key replaces what an earlier one
    /// brought for `n` (as `raw_at`, which takes the last, would see it).
    fn forget(&mut self, set: Set, n: usize) {
        match set {
            Set::Body if n == 0 => {
                self.scan.found[0] = None;
                self.scan.items.clear();
                self.scan.keys.clear();
            }
            Set::Body => self.scan.found[n] = None,
            Set::Key => {
                let base = self.scan.keys.len() - self.keys.len();
                self.scan.keys[base + n] = None;
            }
        }
    }

    /// One value (whitespace before it already skipped). `mask`: the
    /// pointers of `set` that lead here; `level`: how many of their tokens
    /// are behind; `depth`: containers open around it.
    fn value(&mut self, set: Set, mask: u64, level: usize, depth: usize) -> Step {
        if mask == 0 {
            return self.skip(depth);
        }
        let start = self.at;
        let mut ends_here = 0u64;
        let mut deeper = 0u64;
        let pointers = self.pointers(set);
        for n in bits(mask) {
            match pointers[n].tokens.len() == level {
                true => ends_here |= 1 << n,
                false => deeper |= 1 << n,
            }
        }
        let records = set == Set::Body && ends_here & 1 != 0;
        match self.peek() {
            Some(b'[') if records => {
                if deeper != 0 {
                    // A pagination pointer inside the records array: rare,
                    // and the general path handles it.
                    return Err(Bail);
                }
                self.forget(Set::Body, 0);
                self.records(depth)?;
            }
            Some(b'{') if deeper != 0 => self.object(set, deeper, level, depth)?,
            Some(b'[') if deeper != 0 => self.array(set, deeper, level, depth)?,
            _ => self.skip(depth)?,
        }
        let found = &self.text[start..self.at];
        for n in bits(ends_here) {
            self.record(set, n, found);
        }
        Ok(())
    }

    /// An object some pointers step into.
    fn object(&mut self, set: Set, mask: u64, level: usize, depth: usize) -> Step {
        self.open(depth)?;
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.whitespace();
            let key = self.key()?;
            let mut inner = 0u64;
            let pointers = self.pointers(set);
            for n in bits(mask) {
                if pointers[n].tokens[level].as_bytes() == key {
                    inner |= 1 << n;
                }
            }
            for n in bits(inner) {
                self.forget(set, n);
            }
            self.whitespace();
            self.eat(b':')?;
            self.whitespace();
            self.value(set, inner, level + 1, depth + 1)?;
            if self.close(b'}')? {
                return Ok(());
            }
        }
    }

    /// An array some pointers step into by index.
    fn array(&mut self, set: Set, mask: u64, level: usize, depth: usize) -> Step {
        self.open(depth)?;
        self.whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        let mut i = 0usize;
        loop {
            self.whitespace();
            let mut inner = 0u64;
            let pointers = self.pointers(set);
            for n in bits(mask) {
                if pointers[n].indices[level] == Some(i) {
                    inner |= 1 << n;
                }
            }
            self.value(set, inner, level + 1, depth + 1)?;
            i += 1;
            if self.close(b']')? {
                return Ok(());
            }
        }
    }

    /// The records array: every element kept, and its keys looked up.
    fn records(&mut self, depth: usize) -> Step {
        self.open(depth)?;
        self.whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        let all = match self.has_keys {
            true => u64::MAX >> (64 - self.keys.len()),
            false => 0,
        };
        loop {
            self.whitespace();
            let start = self.at;
            let slots = self.keys.len();
            self.scan.keys.extend(std::iter::repeat_n(None, slots));
            self.value(Set::Key, all, 0, depth + 1)?;
            self.scan.items.push(&self.text[start..self.at]);
            if self.close(b']')? {
                return Ok(());
            }
        }
    }

    /// Past the `[` or `{` of a container opened inside `depth` others.
    fn open(&mut self, depth: usize) -> Step {
        if depth + 1 > MAX_NESTING {
            return Err(Bail);
        }
        self.at += 1;
        Ok(())
    }

    /// After a member or element: true at the container's end, false after
    /// a comma.
    fn close(&mut self, end: u8) -> Step<bool> {
        self.whitespace();
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(false)
            }
            Some(b) if b == end => {
                self.at += 1;
                Ok(true)
            }
            _ => Err(Bail),
        }
    }

    /// An object key as written between its quotes; a key with an escape
    /// bails (compared as written it could differ from what it means).
    fn key(&mut self) -> Step<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.at;
        self.string_rest()?;
        let key = &self.bytes[start..self.at - 1];
        match key.contains(&b'\\') {
            true => Err(Bail),
            false => Ok(key),
        }
    }

    /// Any value, checked and passed over; containers nest on a stack of
    /// their closing bytes rather than by recursion.
    fn skip(&mut self, depth: usize) -> Step {
        self.stack.clear();
        loop {
            // One value.
            match self.peek().ok_or(Bail)? {
                b'"' => {
                    self.at += 1;
                    self.string_rest()?;
                }
                open @ (b'{' | b'[') => {
                    self.open(depth + self.stack.len())?;
                    let end = if open == b'{' { b'}' } else { b']' };
                    self.whitespace();
                    if self.peek() == Some(end) {
                        self.at += 1;
                    } else {
                        self.stack.push(end);
                        if end == b'}' {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // After a value: close containers, or go on after a comma.
            loop {
                let Some(&end) = self.stack.last() else {
                    return Ok(());
                };
                if self.close(end)? {
                    self.stack.pop();
                    continue;
                }
                self.whitespace();
                if end == b'}' {
                    self.member_key()?;
                }
                break;
            }
        }
    }

    /// `"key" :` and the whitespace after it, inside a skipped object.
    fn member_key(&mut self) -> Step {
        self.eat(b'"')?;
        self.string_rest()?;
        self.whitespace();
        self.eat(b':')?;
        self.whitespace();
        Ok(())
    }

    /// The rest of a string after its opening quote, through the closing
    /// one. serde_json's rules: no raw control characters, escapes from the
    /// JSON set, `\u` with four hex digits (any code unit: unpaired
    /// surrogates pass when a value is only skipped or kept raw).
    fn string_rest(&mut self) -> Step {
        loop {
            let rest = &self.bytes[self.at..];
            let stop = special(rest).ok_or(Bail)?;
            self.at += stop + 1;
            match rest[stop] {
                b'"' => return Ok(()),
                b'\\' => match self.peek().ok_or(Bail)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                    b'u' => {
                        let hex = self.bytes.get(self.at + 1..self.at + 5).ok_or(Bail)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(Bail);
                        }
                        self.at += 5;
                    }
                    _ => return Err(Bail),
                },
                _ => return Err(Bail),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        match self.bytes[self.at..].starts_with(word) {
            true => {
                self.at += word.len();
                Ok(())
            }
            false => Err(Bail),
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Step {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Bail),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(Bail);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(Bail);
            }
        }
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }
}

/// The first byte of `bytes` that ends a run of plain string content: a
/// quote, a backslash or a control character. Eight bytes at a time (the
/// bit trick serde_json uses too): strings are most of a page's bytes.
fn special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        let control = v.wrapping_sub(ONES * 0x20) & !v;
        let q = v ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let b = v ^ (ONES * u64::from(b'\\'));
        let backslash = b.wrapping_sub(ONES) & !b;
        let found = (control | quote | backslash) & HIGH;
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|n| at + n)
}

#[cfg(test)]
mod tests;
