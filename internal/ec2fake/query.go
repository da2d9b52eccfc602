package ec2fake

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// params is an EC2 Query request's form values as a tree: the flattened
// keys "TagSpecification.1.Tag.2.Key" become nested nodes, numbered
// segments list members in order.
type params struct {
	val      string
	children map[string]*params
}

func parseParams(v url.Values) *params {
	root := &params{}
	for k, vs := range v {
		n := root
		for _, seg := range strings.Split(k, ".") {
			if n.children == nil {
				n.children = map[string]*params{}
			}
			c, ok := n.children[seg]
			if !ok {
				c = &params{}
				n.children[seg] = c
			}
			n = c
		}
		if len(vs) > 0 {
			n.val = vs[0]
		}
	}
	return root
}

// get returns the child at a dotted path, never nil.
func (p *params) get(path string) *params {
	n := p
	for _, seg := range strings.Split(path, ".") {
		if n == nil || n.children == nil {
			return &params{}
		}
		n = n.children[seg]
	}
	if n == nil {
		return &params{}
	}
	return n
}

func (p *params) str(path string) string { return p.get(path).val }

func (p *params) has(path string) bool {
	n := p.get(path)
	return n.val != "" || len(n.children) > 0
}

func (p *params) int(path string, def int) int {
	s := p.str(path)
	if s == "" {
		return def
	}
	i, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return i
}

func (p *params) bool(path string) bool { return p.str(path) == "true" }

// list returns the numbered members of the node at path, in index order.
func (p *params) list(path string) []*params {
	n := p.get(path)
	type kv struct {
		i int
		p *params
	}
	var items []kv
	for k, c := range n.children {
		if i, err := strconv.Atoi(k); err == nil {
			items = append(items, kv{i, c})
		}
	}
	sort.Slice(items, func(a, b int) bool { return items[a].i < items[b].i })
	out := make([]*params, 0, len(items))
	for _, it := range items {
		out = append(out, it.p)
	}
	return out
}

// strs returns the values of a list of strings ("InstanceId.1", ...).
func (p *params) strs(path string) []string {
	var out []string
	for _, c := range p.list(path) {
		out = append(out, c.val)
	}
	return out
}

// filter is one Filter.N of a Describe call.
type filter struct {
	Name   string
	Values []string
}

func (p *params) filters() []filter {
	var out []filter
	for _, f := range p.list("Filter") {
		out = append(out, filter{Name: f.str("Name"), Values: f.strs("Value")})
	}
	return out
}

// tagSpecs returns the tags of TagSpecification.N for a resource type.
func (p *params) tagSpecs(resourceType string) map[string]string {
	tags := map[string]string{}
	for _, ts := range p.list("TagSpecification") {
		if ts.str("ResourceType") != resourceType {
			continue
		}
		for _, t := range ts.list("Tag") {
			tags[t.str("Key")] = t.str("Value")
		}
	}
	return tags
}

// matches reports whether a resource whose filterable fields are given by
// field passes every filter (values of one filter are ORed; "*" and "?"
// are wildcards, as in EC2).
func matches(fs []filter, field func(name string) []string) bool {
	for _, f := range fs {
		have := field(f.Name)
		ok := false
		for _, want := range f.Values {
			for _, h := range have {
				if wildcard(want, h) {
					ok = true
				}
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// wildcard matches s against a pattern with * and ?.
func wildcard(pat, s string) bool {
	if !strings.ContainsAny(pat, "*?") {
		return pat == s
	}
	if pat == "" {
		return s == ""
	}
	switch pat[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if wildcard(pat[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && wildcard(pat[1:], s[1:])
	}
	return s != "" && s[0] == pat[0] && wildcard(pat[1:], s[1:])
}

// tagFields answers the tag filters: "tag:KEY", "tag-key", "tag-value".
func tagFields(tags map[string]string, name string) ([]string, bool) {
	if k, ok := strings.CutPrefix(name, "tag:"); ok {
		if v, ok := tags[k]; ok {
			return []string{v}, true
		}
		return nil, true
	}
	switch name {
	case "tag-key":
		var out []string
		for k := range tags {
			out = append(out, k)
		}
		return out, true
	case "tag-value":
		var out []string
		for _, v := range tags {
			out = append(out, v)
		}
		return out, true
	}
	return nil, false
}

// apiError is an EC2 error response.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func badRequest(code, format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, code, format, args...)
}

const xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"

// writeXML writes an EC2 response document: root element <Action>Response
// with the request id and body's fields.
func writeXML(w http.ResponseWriter, action, requestID string, body any) {
	var buf strings.Builder
	enc := xml.NewEncoder(&buf)
	err := enc.EncodeElement(body, xml.StartElement{Name: xml.Name{Local: "x"}})
	if err == nil {
		err = enc.Flush()
	}
	b := buf.String()
	if err != nil {
		writeError(w, requestID, errf(500, "InternalError", "encoding the response: %v", err))
		return
	}
	// body marshals as <x>…</x>; rename its root to the action's response.
	inner := b[strings.IndexByte(b, '>')+1 : strings.LastIndexByte(b, '<')]
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<%sResponse xmlns="%s"><requestId>%s</requestId>%s</%sResponse>`,
		action, xmlns, requestID, inner, action)
}

func writeError(w http.ResponseWriter, requestID string, e *apiError) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	var msg strings.Builder
	_ = xml.EscapeText(&msg, []byte(e.msg))
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
		e.code, msg.String(), requestID)
}

// XML shapes shared by several responses.

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func tagSet(tags map[string]string) []xmlTag {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]xmlTag, 0, len(keys))
	for _, k := range keys {
		out = append(out, xmlTag{k, tags[k]})
	}
	return out
}

type xmlState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type xmlGroup struct {
	GroupID   string `xml:"groupId"`
	GroupName string `xml:"groupName,omitempty"`
}
