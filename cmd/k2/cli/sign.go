package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact/sign"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
)

const signFormat = `Signatures are cosign's format, so cosign reads them: a Sigstore bundle
(v0.3) with a DSSE envelope of an in-toto statement naming the artifact's
manifest digest (predicate https://sigstore.dev/cosign/sign/v1), attached to
the artifact as an OCI referrer. Keys are PEM files, ECDSA P-256 or ed25519
(unencrypted PKCS#8, or SEC 1 for ECDSA); keyless signing is not supported:

  openssl genpkey -algorithm ed25519 -out k2.key
  openssl pkey -in k2.key -pubout -out k2.pub

A reference with a registry host is signed or verified in that registry
(registries without the OCI referrers API get the referrers tag schema);
one without, in the local store, and 'k2 push' carries its signatures along.`

func newSignCmd(g *globals) *cobra.Command {
	var rf remoteFlags
	var keyFile string
	cmd := &cobra.Command{
		Use:   "sign REF --key FILE",
		Short: "Sign an artifact and attach the signature to it",
		Long: `Sign signs the artifact's manifest digest with a private key and attaches
the signature to the artifact where it lives. The digest names the config and
every layer, so any change to the artifact breaks the signature.

` + signFormat,
		Example: `  k2 sign 127.0.0.1:5000/hello:v1 --key k2.key
  k2 verify 127.0.0.1:5000/hello@sha256:… --key k2.pub`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			if keyFile == "" {
				return usererr.Usage("--key is required: the private key to sign with")
			}
			key, err := sign.LoadPrivateKey(keyFile)
			if err != nil {
				return err
			}
			store, err := g.openStore(cmd.Context())
			if err != nil {
				return err
			}
			sig, ref, err := sign.SignRef(cmd.Context(), store, args[0], key, rf.options(g), sign.Options{})
			if err != nil {
				return err
			}
			out := struct {
				Ref string `json:"ref"`
				*sign.Signature
			}{ref, sig}
			return output.Render(g.stdout, f, out, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "signed %s with %s\nsignature %s\n", ref, key.Public(), sig.Digest)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM private key to sign with (ECDSA P-256 or ed25519)")
	rf.register(cmd)
	return cmd
}

func newVerifyCmd(g *globals) *cobra.Command {
	var rf remoteFlags
	var keyFiles []string
	var noContent bool
	cmd := &cobra.Command{
		Use:   "verify REF --key FILE [--key FILE…]",
		Short: "Check that an artifact carries a valid signature by a key",
		Long: `Verify checks that the artifact carries a signature that is valid for its
manifest digest with one of the public keys (a private key file works too),
and reads the manifest, config and every layer to check each against its
digest (--no-content skips that). It exits 0 when verified and 1 otherwise,
naming each signature found and why it was rejected. It checks what
'cosign verify --key FILE --insecure-ignore-tlog' checks, with the same
library (sigstore-go).

` + signFormat,
		Example: `  k2 verify 127.0.0.1:5000/hello:v1 --key k2.pub
  k2 verify hello:v1 --key release.pub --key backup.pub -o json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			if len(keyFiles) == 0 {
				return usererr.Usage("--key is required: the public key(s) a signature must verify with")
			}
			keys, err := loadPublicKeys(keyFiles)
			if err != nil {
				return err
			}
			store, err := g.openStore(cmd.Context())
			if err != nil {
				return err
			}
			res, err := sign.VerifyRef(cmd.Context(), store, args[0], keys, rf.options(g), sign.VerifyOptions{Content: !noContent})
			if err != nil {
				if res != nil && f == output.JSON {
					output.Render(g.stdout, f, res, nil)
				}
				return err
			}
			return output.Render(g.stdout, f, res, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "verified %s: signed by %s (%d signature(s))\n", res.Ref,
					(&sign.PublicKey{ID: res.Key.ID, Source: res.Key.Source}), len(res.Signatures))
				return err
			})
		},
	}
	cmd.Flags().StringArrayVar(&keyFiles, "key", nil, "PEM public key a signature must verify with (repeatable: any of them)")
	cmd.Flags().BoolVar(&noContent, "no-content", false, "check signatures only, without reading every layer")
	rf.register(cmd)
	return cmd
}

// loadPublicKeys reads PEM public keys.
func loadPublicKeys(files []string) ([]*sign.PublicKey, error) {
	var keys []*sign.PublicKey
	for _, f := range files {
		k, err := sign.LoadPublicKey(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}
