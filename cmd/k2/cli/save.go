package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/usererr"
)

func newSaveCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use: "save REF... -o FILE.tar",
		// -o is the global output format elsewhere; here it names the
		// tarball, so the root's format check must not run.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		Short:             "Write artifacts to an OCI image-layout tarball (air-gapped transfer)",
		Long: `Save writes one or more artifacts from the local store, with every layer, to a
tarball in the OCI image-layout format. Carry it to a site without registry
access and run k2 load there.

Example:
  k2 save hello:v1 -o hello.tar
  k2 load hello.tar                    (on the other side)`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usererr.Usage("name at least one artifact; see 'k2 save --help'")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" && cmd.Flags().Changed("output") {
				out = g.outFlag
			}
			if out == "" || out == "text" || out == "json" {
				return usererr.Usage("missing -o FILE.tar; name the tarball to write")
			}
			store, err := g.openStore(cmd.Context())
			if err != nil {
				return err
			}
			tmp := out + ".tmp"
			f, err := os.Create(tmp)
			if err != nil {
				return err
			}
			err = artifact.Save(cmd.Context(), store, args, f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Rename(tmp, out); err != nil {
				return err
			}
			if g.quiet {
				return nil
			}
			fi, _ := os.Stat(out)
			_, err = fmt.Fprintf(g.stderr, "saved %d artifact(s) to %s (%d bytes)\n", len(args), out, fi.Size())
			return err
		},
	}
	cmd.Flags().StringVar(&out, "file", "", "tarball to write (same as -o FILE)")
	return cmd
}
