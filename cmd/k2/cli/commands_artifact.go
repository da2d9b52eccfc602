package cli

import (
	"context"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
)

// artifactCommands returns the top-level commands of the artifact area.
func artifactCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newBuildCmd(g),
		newPushCmd(g),
		newPullCmd(g),
		newInspectCmd(g),
		newSaveCmd(g),
		newLoadCmd(g),
		newImagesCmd(g),
		newRepoCmd(g),
		newRegistryCmd(g),
		newSignCmd(g),
		newVerifyCmd(g),
	}
}

// openStore opens the local artifact store under $K2_HOME.
func (g *globals) openStore(ctx context.Context) (*artifact.Store, error) {
	s, err := artifact.OpenStore(ctx, artifact.StoreDir(g.home))
	if err != nil {
		return nil, err
	}
	s.Logger = g.logger()
	return s, nil
}

// remoteFlags are the registry flags of push, pull, build and inspect.
type remoteFlags struct {
	insecure bool
}

func (r *remoteFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&r.insecure, "insecure", false,
		"use plain HTTP for the registry (always used for localhost and 127.0.0.1)")
}

func (r *remoteFlags) options(g *globals) artifact.RemoteOptions {
	return artifact.RemoteOptions{Insecure: r.insecure, Logger: g.logger()}
}
