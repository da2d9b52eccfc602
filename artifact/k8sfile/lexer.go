package k8sfile

import (
	"strings"
	"unicode/utf8"
)

// The lexer turns source into nodes: one per logical line (physical lines
// joined by a trailing backslash), each a keyword and its argument tokens with
// positions. It knows nothing of instructions; it only handles whitespace,
// comments, continuation, quoting and escapes.
//
//   - A "#" that starts a token begins a comment to the end of the physical
//     line; "#" inside a token (repo-url#chart) is literal.
//   - A "\" followed only by blanks (or a comment) up to the end of the line
//     continues the instruction on the next line. Comment lines and blank
//     lines inside a continuation are skipped.
//   - "…" quotes a value: blanks and "#" are literal, and \" \\ \n \t are
//     the escapes. Outside quotes, "\" makes the next character literal.
//     Quoted and unquoted parts next to each other form one token:
//     key="a b" is the token `key=a b`.

// token is one word of an instruction.
type token struct {
	Pos           // where the token starts
	Val    string // unquoted and unescaped text
	Eq     int    // byte offset in Val of the first '=' outside quotes; -1 if none
	ValPos Pos    // position just after that '=' (the value of key=value)
	Quoted bool   // some part was quoted
}

// key and value split a key=value token at its first unquoted '='.
func (t token) key() string {
	if t.Eq < 0 {
		return t.Val
	}
	return t.Val[:t.Eq]
}

func (t token) value() string {
	if t.Eq < 0 {
		return ""
	}
	return t.Val[t.Eq+1:]
}

// isPair reports whether t is key=value.
func (t token) isPair() bool { return t.Eq >= 0 }

// warning is a legal but probably unintended construct, at a line.
type warning struct {
	line int
	msg  string
}

// node is one instruction as written: its keyword and arguments.
type node struct {
	Keyword token
	Args    []token
}

type lexer struct {
	name       string
	src        string
	off        int
	line, col  int
	lineOnlyWS bool // nothing but blanks so far on the current physical line
	cont       bool // the previous physical line ended with a continuation
	contLine   int  // line of the pending continuation backslash
	errs       []*Error
	warns      []warning
	nodes      []node
	cur        *node
}

func lex(name string, src []byte) ([]node, []warning, []*Error) {
	l := &lexer{name: name, src: string(src), line: 1, col: 1, lineOnlyWS: true}
	if strings.HasPrefix(l.src, "\uFEFF") { // byte-order mark
		l.off = len("\uFEFF")
	}
	l.run()
	return l.nodes, l.warns, l.errs
}

func (l *lexer) pos() Pos { return Pos{File: l.name, Line: l.line, Col: l.col} }

func (l *lexer) eof() bool { return l.off >= len(l.src) }

func (l *lexer) peek() byte { return l.src[l.off] }

// next consumes one rune and keeps line and column.
func (l *lexer) next() rune {
	r, w := utf8.DecodeRuneInString(l.src[l.off:])
	l.off += w
	if r == '\n' {
		l.line++
		l.col = 1
		l.lineOnlyWS = true
	} else {
		l.col++
	}
	return r
}

func (l *lexer) errorf(p Pos, msg, hint string) {
	l.errs = append(l.errs, &Error{Pos: p, Instruction: l.instruction(), Msg: msg, Hint: hint})
}

func (l *lexer) instruction() string {
	if l.cur == nil || !isKeyword(strings.ToUpper(l.cur.Keyword.Val)) {
		return ""
	}
	return strings.ToUpper(l.cur.Keyword.Val)
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' }

// skipToEOL consumes everything up to, not including, the newline.
func (l *lexer) skipToEOL() {
	for !l.eof() && l.peek() != '\n' {
		l.next()
	}
}

// atContinuation reports whether the "\" at l.off is followed only by blanks
// up to the end of the line (or file), or by blanks and a comment. "\#" with
// no blank between is an escaped "#".
func (l *lexer) atContinuation() bool {
	i := l.off + 1
	for i < len(l.src) && isBlank(l.src[i]) {
		i++
	}
	return i >= len(l.src) || l.src[i] == '\n' || (l.src[i] == '#' && i > l.off+1)
}

func (l *lexer) finish() {
	if l.cur != nil {
		l.nodes = append(l.nodes, *l.cur)
		l.cur = nil
	}
	l.cont = false
}

func (l *lexer) run() {
	for {
		for !l.eof() && isBlank(l.peek()) {
			l.next()
		}
		if l.eof() {
			if l.cont {
				l.warns = append(l.warns, warning{l.contLine, "the last line ends with a continuation \\ but nothing follows"})
			}
			l.finish()
			return
		}
		switch c := l.peek(); {
		case c == '\n':
			blank := l.lineOnlyWS
			l.next()
			if !l.cont {
				l.finish()
			} else if blank {
				l.warns = append(l.warns, warning{l.line - 1, "empty line inside a continued instruction; it is skipped, but an instruction ends at the first line without a trailing \\"})
			}
		case c == '#':
			// A comment line inside a continuation is skipped entirely, so
			// the instruction goes on.
			l.lineOnlyWS = false
			l.skipToEOL()
		case c == '\\' && l.atContinuation():
			l.contLine = l.line
			l.next()
			for !l.eof() && isBlank(l.peek()) {
				l.next()
			}
			l.skipToEOL() // a trailing comment after the backslash
			if !l.eof() {
				l.next() // the newline
			}
			l.cont = true
		default:
			t := l.word()
			l.lineOnlyWS = false
			l.cont = false
			if l.cur == nil {
				l.cur = &node{Keyword: t}
			} else {
				l.cur.Args = append(l.cur.Args, t)
			}
		}
	}
}

// word reads one token: everything up to a blank or newline outside quotes.
func (l *lexer) word() token {
	t := token{Pos: l.pos(), Eq: -1}
	// Most tokens are plain text: slice them out of the source, and only
	// copy into b once a quote or escape makes the value differ.
	start, plain := l.off, true
	var b strings.Builder
	unplain := func() {
		if plain {
			plain = false
			b.WriteString(l.src[start:l.off])
		}
	}
	value := func() string {
		if plain {
			return l.src[start:l.off]
		}
		return b.String()
	}
	for !l.eof() {
		c := l.peek()
		switch {
		case isBlank(c) || c == '\n':
			t.Val = value()
			return t
		case c == '"':
			unplain()
			t.Quoted = true
			l.quoted(&b)
		case c == '\\':
			if l.atContinuation() {
				t.Val = value()
				return t
			}
			unplain()
			l.next()
			if l.eof() {
				b.WriteByte('\\')
				break
			}
			l.copyRune(&b)
		case c == '=' && t.Eq < 0:
			if plain {
				t.Eq = l.off - start
			} else {
				t.Eq = b.Len()
				b.WriteByte('=')
			}
			l.next()
			t.ValPos = l.pos()
		default:
			if plain {
				l.next()
			} else {
				l.copyRune(&b)
			}
		}
	}
	t.Val = value()
	return t
}

// copyRune consumes one rune and writes its bytes, as they are, to b.
func (l *lexer) copyRune(b *strings.Builder) {
	from := l.off
	l.next()
	b.WriteString(l.src[from:l.off])
}

// quoted reads a "…" section (l.off at the opening quote) into b.
func (l *lexer) quoted(b *strings.Builder) {
	open := l.pos()
	l.next()
	for !l.eof() {
		c := l.peek()
		switch c {
		case '"':
			l.next()
			return
		case '\n':
			l.errorf(open, "unterminated quoted value", `close it with " on the same line; use \n for a newline inside the value`)
			return
		case '\\':
			esc := l.pos()
			l.next()
			if l.eof() || l.peek() == '\n' {
				l.errorf(open, "unterminated quoted value", `close it with " on the same line; a continuation \ cannot be inside quotes`)
				return
			}
			switch r := l.next(); r {
			case '"', '\\':
				b.WriteByte(byte(r))
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				l.errorf(esc, "unknown escape \\"+string(r)+" in quoted value", `the escapes are \" \\ \n \t; write \\ for a backslash`)
			}
		default:
			l.copyRune(b)
		}
	}
	l.errorf(open, "unterminated quoted value", `close it with "`)
}
