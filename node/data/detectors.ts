/**
 * Detectors for likely direct identifiers in a column's raw text, run by the
 * suitability gate whatever the site's policy says. Each looks for
 * substrings, so an e-mail inside a notes field counts. Checksums (Luhn for
 * cards, mod-97 for IBANs) keep plain numbers from being flagged. Findings
 * carry counts only, never the values: the gate's report is printed and
 * stored.
 */

export type DetectorKind = 'email' | 'phone' | 'card' | 'iban' | 'national-id' | 'free-text'

export interface Finding {
  kind: DetectorKind
  /** Values in which the detector fired. */
  count: number
  /** Non-empty values examined. */
  of: number
}

const EMAIL_RE = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/

// International (+CC ...), bracketed area code, NANP 555-123-4567, and
// trunk-prefixed national numbers (030 1234567, 07700 900123); each with the
// fewest digits a real number of that shape has. The last two must stand
// alone, not be two groups of a longer digit run such as an IBAN.
const PHONE_RES: Array<[RegExp, number]> = [
  [/(?:^|[^\w+])\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}(?!\w)/g, 8],
  [/(?:^|[^\w])\(\d{2,4}\)\s?\d{3,4}[\s.-]?\d{3,4}(?!\w)/g, 7],
  [/(?:^|[^\w.-])(?<!\d\s)\d{3}[.-]\d{3}[.-]\d{4}(?![\w.-]|\s\d)/g, 10],
  [/(?:^|[^\w.-])(?<!\d\s)0\d{2,4}[\s/-]\d{4,8}(?![\w.-]|\s\d)/g, 7]
]

function hasPhone (value: string): boolean {
  for (const [re, minDigits] of PHONE_RES) {
    for (const m of value.matchAll(re)) {
      const digits = m[0].replace(/\D/g, '').length
      if (digits >= minDigits && digits <= 15) return true
    }
  }
  return false
}

// Not the fractional part of a decimal (0.1234567890123456 is no card), nor part of a longer number.
const CARD_CANDIDATE_RE = /(?<![\d.]|\d\.)(?:\d[ -]?){12,18}\d(?!\.?\d)/g
const IBAN_CANDIDATE_RE = /[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}/g

// US SSN (not area 000/666/9xx, group 00 or serial 0000), UK NINO, and the
// Nordic date-plus-serial shape (YYMMDD-NNNN).
const NATIONAL_ID_RES = [
  /(?:^|[^\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])/,
  /(?:^|[^\w])[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)/,
  /(?:^|[^\w-])\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[-+]\d{4}(?![\w-])/
]

/** Luhn checksum over a string of digits. */
export function luhnValid (digits: string): boolean {
  let sum = 0
  let double = false
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48
    if (d < 0 || d > 9) return false
    if (double) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
    double = !double
  }
  return digits.length > 0 && sum % 10 === 0
}

/** ISO 13616 check: the rearranged IBAN, letters as 10..35, is 1 mod 97. */
export function ibanValid (candidate: string): boolean {
  const s = candidate.replace(/ /g, '')
  if (s.length < 15 || s.length > 34 || !/^[A-Z]{2}\d{2}[A-Z0-9]+$/.test(s)) return false
  const moved = s.slice(4) + s.slice(0, 4)
  let rem = 0
  for (const ch of moved) {
    const code = ch.charCodeAt(0)
    const v = code >= 65 ? code - 55 : code - 48
    // Letters are two digits, digits one: fold them in base 100 or 10.
    rem = (rem * (v >= 10 ? 100 : 10) + v) % 97
  }
  return rem === 1
}

function hasCard (value: string): boolean {
  for (const m of value.matchAll(CARD_CANDIDATE_RE)) {
    const digits = m[0].replace(/[ -]/g, '')
    if (digits.length >= 13 && digits.length <= 19 && luhnValid(digits)) return true
  }
  return false
}

function hasIban (value: string): boolean {
  for (const m of value.toUpperCase().matchAll(IBAN_CANDIDATE_RE)) {
    // The greedy match may run into following words; try each shorter prefix.
    const s = m[0]
    for (let end = s.length; end >= 15; end--) if (ibanValid(s.slice(0, end))) return true
  }
  return false
}

/** Prose: at least 4 words with letters and 20 characters. */
function looksLikeProse (value: string): boolean {
  if (value.length < 20) return false
  let words = 0
  for (const w of value.split(/\s+/)) if (/\p{L}{2,}/u.test(w)) words++
  return words >= 4
}

function digitCount (v: string): number {
  let d = 0
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i)
    if (c >= 48 && c <= 57) d++
  }
  return d
}

// Each test has a cheap precondition (an '@', enough digits) so ordinary values skip the regexes.
const IDENTIFIER_TESTS: Array<[DetectorKind, (v: string, digits: number) => boolean]> = [
  ['email', v => v.includes('@') && EMAIL_RE.test(v)],
  ['phone', (v, digits) => digits >= 7 && hasPhone(v)],
  ['card', (v, digits) => digits >= 13 && hasCard(v)],
  ['iban', (v, digits) => digits >= 2 && v.length >= 15 && hasIban(v)],
  ['national-id', (v, digits) => digits >= 6 && NATIONAL_ID_RES.some(re => re.test(v))]
]

/** A column counts as free text when this share of its values is prose. */
export const FREE_TEXT_SHARE = 0.3

export interface DetectOptions {
  /** Run the free-text detector (the gate skips it for columns with declared categories). */
  freeText?: boolean
}

/** Runs every detector over a column's raw values; returns the ones that fired. */
export function detectColumn (values: readonly string[], options: DetectOptions = {}): Finding[] {
  const counts = new Map<DetectorKind, number>()
  let of = 0
  let prose = 0
  for (const v of values) {
    if (v.trim() === '') continue
    of++
    const digits = digitCount(v)
    for (const [kind, test] of IDENTIFIER_TESTS) if (test(v, digits)) counts.set(kind, (counts.get(kind) ?? 0) + 1)
    if (options.freeText === true && looksLikeProse(v)) prose++
  }
  const findings: Finding[] = [...counts].map(([kind, count]) => ({ kind, count, of }))
  if (options.freeText === true && of > 0 && prose / of >= FREE_TEXT_SHARE) findings.push({ kind: 'free-text', count: prose, of })
  return findings
}

export function isIdentifier (kind: DetectorKind): boolean {
  return kind !== 'free-text'
}

export function describeFinding (f: Finding): string {
  const what = f.kind === 'free-text' ? 'free text' : f.kind === 'national-id' ? 'national-id-like numbers' : f.kind === 'email' ? 'e-mail addresses' : f.kind === 'phone' ? 'phone numbers' : f.kind === 'card' ? 'card numbers (Luhn)' : 'IBANs'
  return `${what} in ${f.count} of ${f.of} values`
}
