package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/cluster"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
	"k2.dev/k2/state/backup"
)

type migrateFlags struct {
	deploy         deployFlags
	toEnv          string
	providerConfig string
	push           string
	yes, keepOld   bool
}

// migrateResult is what 'k2 migrate' reports.
type migrateResult struct {
	From       string               `json:"from"`
	To         string               `json:"to"`
	Backup     string               `json:"backup"`              // the file
	BackupRef  string               `json:"backupRef,omitempty"` // the OCI artifact
	BackedUpBy string               `json:"backedUpBy"`          // the server that took it
	Deploy     *engine.DeployResult `json:"deploy"`
	OldKept    bool                 `json:"oldKept"`
	Manifest   *backup.Manifest     `json:"backupManifest,omitempty"`
	Took       time.Duration        `json:"took"`
}

func newMigrateCmd(g *globals) *cobra.Command {
	var m migrateFlags
	cmd := &cobra.Command{
		Use:   "migrate <env> --to-env <new> [--provider <provider>]",
		Short: "Move a cluster to another environment (another provider) with its state",
		Long: `Move the cluster of <env> to the environment <new>, which may use another
provider:

  1. back up the cluster's state through one of its servers (k2 backup's
     archive: the datastore, PKI and join tokens) and keep it as an OCI
     artifact in the local store (--push also pushes it to a registry);
  2. deploy the artifact digest <env> runs, with the values it resolved
     (--set overrides some), to <new>: the first server starts from the
     backup instead of an empty datastore, with <env>'s cluster CA, so
     every object, service account token and certificate stays valid;
     <env>'s nodes are forgotten and their pods made again on <new>'s;
  3. wait until the nodes are Ready and every App, Deployment and
     StatefulSet runs again;
  4. destroy <env> (after --yes or a prompt; --keep-old keeps it).

<new> is created with --provider (and --provider-config) if it does not
exist; it must not run a cluster. If the move fails, <env> is untouched;
run 'k2 resume <new>' or 'k2 destroy <new>'.`,
		Example: `  k2 migrate staging --to-env staging-aws --provider aws --provider-config aws.yaml --yes
  k2 migrate dev --to-env dev2 --provider local --keep-old
  k2 migrate prod --to-env prod-eu --push localhost:5000/backups/prod:move -o json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			res, err := runMigrate(cmd.Context(), g, &m, args[0])
			if err != nil {
				return err
			}
			return output.Render(g.stdout, f, res, func(w io.Writer) error {
				old := "destroyed"
				if res.OldKept {
					old = "kept"
				}
				_, err := fmt.Fprintf(w, "migrated %s to %s in %s (backup %s, %s, taken by %s); %s %s\nkubeconfig: %s\n",
					res.From, res.To, res.Took.Round(time.Millisecond), res.Backup, output.Bytes(res.Manifest.DBBytes), res.BackedUpBy,
					res.From, old, cluster.KubeconfigPath(g.home, res.To))
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&m.toEnv, "to-env", "", "the environment to move the cluster to (required)")
	fl.StringVar(&m.deploy.provider, "provider", "", "provider of <new> if it does not exist yet (default: <env>'s)")
	fl.StringVar(&m.providerConfig, "provider-config", "", "YAML or JSON file of provider settings for a <new> created here")
	fl.StringArrayVar(&m.deploy.sets, "set", nil, "ARG value key=value for <new> (repeatable); wins over the values <env> ran with")
	fl.StringVar(&m.push, "push", "", "also push the backup to an OCI registry as this reference")
	fl.BoolVar(&m.yes, "yes", false, "destroy <env> after the move without asking")
	fl.BoolVar(&m.keepOld, "keep-old", false, "keep <env> running after the move")
	fl.DurationVar(&m.deploy.timeout, "timeout", defaultReadyTimeout, "how long to wait for the control plane, the nodes, each layer and the workloads")
	m.deploy.remote.register(cmd)
	return cmd
}

func runMigrate(ctx context.Context, g *globals, m *migrateFlags, from string) (*migrateResult, error) {
	start := time.Now()
	if m.toEnv == "" {
		return nil, usererr.Usage("--to-env is required: the environment to move %s to", from)
	}
	if m.toEnv == from {
		return nil, usererr.Usage("--to-env %s is the environment being moved; name another", from)
	}
	if m.yes && m.keepOld {
		return nil, usererr.Usage("--yes (destroy %s) and --keep-old exclude each other", from)
	}
	s, err := g.openState(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	old, err := s.GetEnv(ctx, from)
	if err != nil {
		return nil, engine.UserError(err)
	}
	cur, last, err := engine.Current(ctx, s, from)
	if err != nil {
		return nil, err
	}
	if last != nil && last.Result != state.Succeeded {
		return nil, usererr.New(usererr.KindFailure, "the last %s of %s %s; finish it first ('k2 resume %s') so the move takes a cluster in a known state", last.Op, from, last.Result, from)
	}
	if m.deploy.provider == "" {
		m.deploy.provider = old.Provider
	}
	if _, err := s.GetEnv(ctx, m.toEnv); errors.Is(err, state.ErrNotFound) {
		if _, err := engine.CreateEnv(ctx, s, engine.EnvCreateOptions{Name: m.toEnv, Provider: m.deploy.provider, ProviderConfigFile: m.providerConfig}); err != nil {
			return nil, err
		}
		fmt.Fprintf(g.stderr, "created environment %s (provider %s)\n", m.toEnv, m.deploy.provider)
	} else if err != nil {
		return nil, engine.UserError(err)
	} else if m.providerConfig != "" {
		return nil, usererr.Usage("environment %s exists: --provider-config applies only to one migrate creates; change it with 'k2 env set'", m.toEnv)
	}
	if _, _, err := engine.Current(ctx, s, m.toEnv); err == nil {
		return nil, usererr.New(usererr.KindFailure, "environment %s runs a cluster; destroy it first ('k2 destroy %s') or migrate to another environment", m.toEnv, m.toEnv)
	}

	// 1. The backup, kept beside the state and as an OCI artifact.
	dir := filepath.Join(g.home, "backups")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	file := filepath.Join(dir, from+"-"+stamp+".tar.gz")
	fmt.Fprintf(g.stderr, "backing up %s\n", from)
	by, man, err := backupEnvToFile(ctx, s, g.home, from, file)
	if err != nil {
		return nil, err
	}
	res := &migrateResult{From: from, To: m.toEnv, Backup: file, BackedUpBy: by, Manifest: man}
	ref := "k2-backups/" + from + ":" + strings.ToLower(stamp)
	if m.push != "" {
		ref = m.push
	}
	store, err := g.openStore(ctx)
	if err != nil {
		return nil, err
	}
	ann := map[string]string{artifact.AnnotationCreated: man.Created.Format(time.RFC3339), "dev.k2.backup.source": "env:" + from}
	desc, err := artifact.StoreFile(ctx, store, ref, artifact.BackupArtifactType, artifact.BackupMediaType, file, ann)
	if err != nil {
		return nil, err
	}
	res.BackupRef = ref + "@" + desc.Digest.String()
	if m.push != "" {
		if res.BackupRef, _, err = artifact.Push(ctx, store, ref, m.deploy.remote.options(g)); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(g.stderr, "backup of %s: %s (%s, datastore %s) = %s\n", from, file, output.Bytes(man.DBBytes), man.Datastore, res.BackupRef)

	// 2–3. The same digest, the same values, on the new environment.
	if err := cluster.CopyIdentity(g.home, from, m.toEnv); err != nil {
		return nil, err
	}
	d := m.deploy
	d.env, d.restore, d.source = m.toEnv, file, from
	userSets := d.sets
	d.sets = nil
	d.setValues(cur.Values)
	d.sets = append(d.sets, userSets...) // later --set wins
	artifactRef := artifact.PinnedRef(cur.ArtifactRef, cur.ArtifactDigest)
	res.Deploy, err = runDeploy(ctx, g, &d, artifactRef, state.OpMigrate, engine.ResumeAuto)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindFailure, fmt.Errorf("deploying %s to %s: %w", artifactRef, m.toEnv, engine.UserError(err)),
			fmt.Sprintf("%s is untouched; continue with 'k2 resume %s', or remove the new one with 'k2 destroy %s'", from, m.toEnv, m.toEnv))
	}
	if err := cluster.WaitWorkloads(ctx, g.home, m.toEnv, d.timeout, func(msg string) { fmt.Fprintln(g.stderr, msg) }); err != nil {
		return nil, usererr.Wrap(usererr.KindFailure, err, fmt.Sprintf("%s is untouched; see 'k2 status %s'", from, m.toEnv))
	}

	// 4. The old environment goes.
	res.OldKept = m.keepOld
	if !m.keepOld {
		if !m.yes {
			in, ok := g.stdin.(*os.File)
			if !ok || !term.IsTerminal(int(in.Fd())) {
				res.OldKept = true
				fmt.Fprintf(g.stderr, "%s is kept: not on a terminal to ask; destroy it with 'k2 destroy %s --yes' (or pass --yes to migrate)\n", from, from)
			} else {
				fmt.Fprintf(g.stderr, "%s runs on %s now. Destroy %s (provider %s)? [y/N] ", from, m.toEnv, from, old.Provider)
				line, _ := bufio.NewReader(in).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					res.OldKept = true
				}
			}
		}
		if !res.OldKept {
			if err := destroyEnv(ctx, g, s, old); err != nil {
				return nil, fmt.Errorf("the move succeeded, but destroying %s failed: %w; retry with 'k2 destroy %s'", from, err, from)
			}
		}
	}
	res.Took = time.Since(start)
	return res, nil
}

// backupEnvToFile takes a backup of env through one of its servers into
// file and returns the server's name and the backup's manifest.
func backupEnvToFile(ctx context.Context, s *state.Store, home, env, file string) (string, *backup.Manifest, error) {
	tmp := file + ".partial"
	w, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return "", nil, err
	}
	by, err := cluster.BackupEnv(ctx, s, home, env, w)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		os.Remove(tmp)
		return "", nil, err
	}
	r, err := os.Open(file)
	if err != nil {
		return "", nil, err
	}
	defer r.Close()
	man, err := backup.ReadManifest(r)
	if err != nil {
		return "", nil, fmt.Errorf("the backup of %s from %s is not readable: %w", env, by, err)
	}
	return by, man, nil
}

// destroyEnv destroys env's cluster through its provider.
func destroyEnv(ctx context.Context, g *globals, s *state.Store, e *state.Environment) error {
	c, err := g.launchProvider(ctx, e.Provider)
	if err != nil {
		return err
	}
	defer c.Close()
	return cluster.Destroy(ctx, s, g.home, e.Name, c, sdk.Config(e.ProviderConfig), g.logger())
}

// latestBackup is the newest backup 'k2 migrate' took of env.
func latestBackup(home, env string) (string, error) {
	files, _ := filepath.Glob(filepath.Join(home, "backups", env+"-*.tar.gz"))
	if len(files) == 0 {
		return "", usererr.New(usererr.KindFailure, "no backup of %s in %s to resume the move with; start it again with 'k2 migrate'", env, filepath.Join(home, "backups"))
	}
	sort.Strings(files) // the names end in a UTC time stamp
	return files[len(files)-1], nil
}
