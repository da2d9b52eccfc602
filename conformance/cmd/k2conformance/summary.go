package main

import (
	"os"
	"regexp"
	"strings"
	"time"

	"k2.dev/k2/conformance/internal/report"
)

const summaryHelp = `Merge ginkgo JUnit reports of the e2e suite (e.g. the parallel and the
[Serial] run) into one result per [Conformance] spec and print it as
Markdown (or JSON with -json).`

func summaryCmd(args []string) error {
	fs := newFlags("summary", summaryHelp)
	var junit, commit, k8s, focus string
	var asJSON bool
	fs.StringVar(&junit, "junit", "", "comma-separated JUnit reports (required)")
	fs.StringVar(&commit, "commit", "", "k2 commit to name")
	fs.StringVar(&k8s, "kubernetes", "", "Kubernetes version to name")
	fs.StringVar(&focus, "focus", `\[Conformance\]`, "the focus the runs used (specs outside it are counted as not run)")
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of Markdown")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if junit == "" {
		return usagef("-junit is required")
	}
	re, err := regexp.Compile(focus)
	if err != nil {
		return usagef("-focus: %v", err)
	}
	var runs [][]report.Case
	for _, p := range strings.Split(junit, ",") {
		cs, err := report.ReadJUnit(p)
		if err != nil {
			return err
		}
		runs = append(runs, cs)
	}
	s := report.Summarize(report.Merge(runs, harnessExclusions(), re))
	s.Date, s.K2Commit, s.Kubernetes = time.Now(), commit, k8s
	if asJSON {
		return writeJSON("/dev/stdout", s)
	}
	return report.WriteMarkdown(os.Stdout, s, nil)
}
