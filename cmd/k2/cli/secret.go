package cli

import (
	"os"
	"strings"

	"github.com/spf13/pflag"

	"k2.dev/k2/internal/usererr"
)

// secretFlag is a secret a command takes from exactly one of a flag
// (--name), a file (--name-file) or an environment variable. It is read at
// run time, after parsing, never as a flag default: help, usage messages
// and logs never show it.
type secretFlag struct {
	name  string // flag name: --name, --name-file
	env   string // environment variable
	what  string // "join token", for help and errors
	value string
	file  string
}

func (s *secretFlag) register(fs *pflag.FlagSet, usage string) {
	fs.StringVar(&s.value, s.name, "", usage+"; or --"+s.name+"-file, or $"+s.env+" (one of the three)")
	fs.StringVar(&s.file, s.name+"-file", "", "file holding the "+s.what+" (instead of --"+s.name+")")
}

// resolve returns the secret ("" if no source gives one); two sources are a
// usage error. A file's content is trimmed of surrounding white space.
func (s *secretFlag) resolve() (string, error) {
	var sources []string
	var v string
	if s.value != "" {
		sources, v = append(sources, "--"+s.name), s.value
	}
	if s.file != "" {
		b, err := os.ReadFile(s.file)
		if err != nil {
			return "", usererr.Wrap(usererr.KindUsage, err, "--"+s.name+"-file names a file holding the "+s.what)
		}
		sources, v = append(sources, "--"+s.name+"-file"), strings.TrimSpace(string(b))
	}
	if e := os.Getenv(s.env); e != "" {
		sources, v = append(sources, "$"+s.env), e
	}
	if len(sources) > 1 {
		return "", usererr.Usage("the %s is given %d ways (%s); give it exactly one way", s.what, len(sources), strings.Join(sources, ", "))
	}
	return v, nil
}
