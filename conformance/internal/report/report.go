// Package report reads the JUnit reports ginkgo writes for the upstream e2e
// suite and summarises the [Conformance] specs: passed, failed, skipped,
// each failure and skip with its reason.
package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Spec is one [Conformance] spec and its outcome.
type Spec struct {
	Name    string  `json:"name"`
	Status  string  `json:"status"` // passed, failed, skipped
	Serial  bool    `json:"serial"`
	Seconds float64 `json:"seconds"`
	// Reason is why it was skipped or failed: the skip message, the
	// failure's first lines, or the harness's reason for leaving it out.
	Reason string `json:"reason,omitempty"`
	// Detail is the failure's longer description (the start of it).
	Detail string `json:"detail,omitempty"`
}

// Summary is the outcome of a whole run.
type Summary struct {
	Date       time.Time `json:"date"`
	K2Commit   string    `json:"k2Commit"`
	Kubernetes string    `json:"kubernetes"`
	Total      int       `json:"total"`
	Passed     int       `json:"passed"`
	Failed     int       `json:"failed"`
	Skipped    int       `json:"skipped"`
	NotRun     int       `json:"notRun"` // outside the run's focus (a subset)
	Specs      []Spec    `json:"specs"`
}

type junitSuites struct {
	Suites []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name    string        `xml:"name,attr"`
	Status  string        `xml:"status,attr"`
	Time    float64       `xml:"time,attr"`
	Skipped *junitMessage `xml:"skipped"`
	Failure *junitFailure `xml:"failure"`
	Error   *junitFailure `xml:"error"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
}

type junitFailure struct {
	Message     string `xml:"message,attr"`
	Type        string `xml:"type,attr"`
	Description string `xml:",chardata"`
}

// Case is a test case of a JUnit report.
type Case struct {
	Name, Status, Message, Detail string
	Seconds                       float64
}

// ReadJUnit reads the test cases of a ginkgo JUnit report.
func ReadJUnit(path string) ([]Case, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s junitSuites
	if err := xml.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Case
	for _, su := range s.Suites {
		for _, c := range su.Cases {
			k := Case{Name: c.Name, Status: c.Status, Seconds: c.Time}
			switch {
			case c.Failure != nil:
				k.Message, k.Detail = c.Failure.Message, c.Failure.Description
			case c.Error != nil:
				k.Message, k.Detail = c.Error.Message, c.Error.Description
			case c.Skipped != nil:
				k.Message = c.Skipped.Message
			}
			out = append(out, k)
		}
	}
	return out, nil
}

var conformance = regexp.MustCompile(`\[Conformance\]`)

// SpecName is a case name without ginkgo's "[It] " and its trailing label
// list, so names from different runs compare equal.
func SpecName(n string) string {
	n = strings.TrimPrefix(n, "[It] ")
	return strings.TrimSpace(n)
}

// Excluded is a spec the harness left out on purpose, with the reason.
type Excluded struct {
	Pattern *regexp.Regexp
	Reason  string
}

// Merge combines the cases of several runs of the suite (the parallel run
// and the [Serial] one) into one result per [Conformance] spec: the outcome
// of the run that ran it; a spec no run ran is skipped, with the reason of
// the exclusion that matched it, or NotRun if the run's focus left it out.
func Merge(runs [][]Case, excluded []Excluded, focus *regexp.Regexp) []Spec {
	byName := map[string]Spec{}
	for _, cases := range runs {
		for _, c := range cases {
			if !conformance.MatchString(c.Name) {
				continue
			}
			name := SpecName(c.Name)
			s := Spec{Name: name, Serial: strings.Contains(name, "[Serial]"), Seconds: c.Seconds}
			switch c.Status {
			case "passed":
				s.Status = "passed"
			case "skipped", "pending":
				if c.Message == "skipped" || c.Message == "pending" || c.Message == "" {
					// Left out by this run's filter: keep what another run did.
					if _, ok := byName[name]; ok {
						continue
					}
					s.Status = "not-run"
				} else {
					s.Status, s.Reason = "skipped", strings.TrimPrefix(c.Message, "skipped - ")
				}
			default: // failed, timedout, panicked, interrupted, aborted
				s.Status = "failed"
				s.Reason = firstLines(c.Message, 3)
				s.Detail = firstLines(c.Detail, 12)
				if s.Reason == "" {
					s.Reason = c.Status
				}
			}
			if old, ok := byName[name]; ok && old.Status != "not-run" && s.Status == "not-run" {
				continue
			}
			byName[name] = s
		}
	}
	var out []Spec
	for _, s := range byName {
		if s.Status == "not-run" && (focus == nil || focus.MatchString(s.Name)) {
			s.Status, s.Reason = "skipped", "not run (the run ended before it, or ginkgo left it out)"
			for _, e := range excluded {
				if e.Pattern.MatchString(s.Name) {
					s.Reason = e.Reason
					break
				}
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	out := strings.Join(lines, "\n")
	if len(out) > 1500 {
		out = out[:1500] + "…"
	}
	return out
}

// Summarize counts specs.
func Summarize(specs []Spec) Summary {
	s := Summary{Specs: specs, Total: len(specs)}
	for _, sp := range specs {
		switch sp.Status {
		case "passed":
			s.Passed++
		case "failed":
			s.Failed++
		case "skipped":
			s.Skipped++
		default:
			s.NotRun++
		}
	}
	return s
}

// WriteJUnit writes the merged result as one JUnit report of the
// [Conformance] specs (those a subset did not run are left out).
func WriteJUnit(w io.Writer, s Summary) error {
	type failure struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	}
	type tc struct {
		Name      string        `xml:"name,attr"`
		Classname string        `xml:"classname,attr"`
		Status    string        `xml:"status,attr"`
		Time      float64       `xml:"time,attr"`
		Skipped   *junitMessage `xml:"skipped,omitempty"`
		Failure   *failure      `xml:"failure,omitempty"`
	}
	type suite struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Skipped  int    `xml:"skipped,attr"`
		Cases    []tc   `xml:"testcase"`
	}
	type suites struct {
		XMLName  xml.Name `xml:"testsuites"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Suite    *suite   `xml:"testsuite"`
	}
	su := &suite{Name: strings.TrimSpace("Kubernetes " + s.Kubernetes + " [Conformance] on k2 " + s.K2Commit)}
	for _, sp := range s.Specs {
		if sp.Status == "not-run" {
			continue
		}
		c := tc{Name: sp.Name, Classname: "Kubernetes e2e suite", Status: sp.Status, Time: sp.Seconds}
		switch sp.Status {
		case "failed":
			c.Failure = &failure{Message: sp.Reason, Text: sp.Detail}
			su.Failures++
		case "skipped":
			c.Skipped = &junitMessage{Message: sp.Reason}
			su.Skipped++
		}
		su.Tests++
		su.Cases = append(su.Cases, c)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(suites{Tests: su.Tests, Failures: su.Failures, Suite: su}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteMarkdown writes the summary as Markdown: the counts, then every
// failure and skip with its reason.
func WriteMarkdown(w io.Writer, s Summary, notes []string) error {
	var b strings.Builder
	ran := s.Total - s.NotRun
	fmt.Fprintf(&b, "# Kubernetes %s conformance on k2\n\n", s.Kubernetes)
	fmt.Fprintf(&b, "- date: %s\n- k2 commit: %s\n", s.Date.UTC().Format("2006-01-02 15:04 UTC"), s.K2Commit)
	fmt.Fprintf(&b, "- **%d of %d** `[Conformance]` specs passed", s.Passed, s.Total)
	if s.NotRun > 0 {
		fmt.Fprintf(&b, " (%d in this run's focus, %d outside it)", ran, s.NotRun)
	}
	fmt.Fprintf(&b, "; %d failed, %d skipped\n", s.Failed, s.Skipped)
	for _, n := range notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	section := func(title, status string) {
		var rows []Spec
		for _, sp := range s.Specs {
			if sp.Status == status {
				rows = append(rows, sp)
			}
		}
		if len(rows) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n## %s (%d)\n\n| spec | reason |\n|---|---|\n", title, len(rows))
		for _, sp := range rows {
			fmt.Fprintf(&b, "| %s | %s |\n", cell(sp.Name), cell(sp.Reason))
		}
	}
	section("Failed", "failed")
	section("Skipped", "skipped")
	_, err := io.WriteString(w, b.String())
	return err
}

func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "<br>")
}
