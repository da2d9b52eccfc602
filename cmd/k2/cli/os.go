package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/cluster"
	"k2.dev/k2/provision/machineconfig"
	"k2.dev/k2/provision/osimage"
)

func newOSCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "os",
		Short: "k2 OS: the machine image providers boot, and its machine config",
		Long: `k2 OS is a Linux kernel and an initramfs whose init is k2 itself ('k2 init'):
a machine that boots it with a machine config becomes a control plane or a
node of a k2 cluster. See docs/os.md.`,
	}
	cfg := &cobra.Command{Use: "config", Short: "Check machine configs"}
	cfg.AddCommand(newOSConfigCheckCmd(g), newOSConfigGenCmd(g))
	cmd.AddCommand(cfg, newOSBuildCmd(g), newOSPushCmd(g), newOSPullCmd(g))
	return cmd
}

func newOSBuildCmd(g *globals) *cobra.Command {
	var o osimage.Options
	cmd := &cobra.Command{
		Use:   "build -o DIR [--format raw]",
		Short: "Build the k2 OS boot image: kernel, initramfs and (--format raw) a bootable disk",
		Long: `Build the k2 OS boot image into DIR:

  vmlinuz              the kernel (from the build host: --kernel, default the newest /boot/vmlinuz-*)
  initramfs.cpio.zst   its initramfs (initramfs.cpio with --compress none): k2 as /init, the runc shim, runc, the CNI plugins, iptables,
                       mkfs.ext4, busybox (modprobe, a rescue shell), their shared libraries and the
                       kernel modules k2 needs (virtio, e1000/igb/ixgbe/ena, nvme/ahci, ext4, vfat,
                       isofs, overlay, bridge, veth, br_netfilter, netfilter)
  disk.raw             with --format raw: a bootable disk holding both (a cloud image, an AMI, or dd
                       it to a disk)
  k2os.json            what is in it: file names, sizes, digests, the kernel command line to use

Every program comes from this machine (Debian: runc, containernetworking-plugins, iptables,
e2fsprogs, busybox-static, linux-image-amd64); the same inputs give the same bytes.
'k2 os push DIR REF' shares the image through any OCI registry. docs/os.md describes it.`,
		Example: `  k2 os build -o out/
  k2 os build -o out/ --format raw
  k2 os build -o out/ --kernel /boot/vmlinuz-6.1.0-57-amd64 --compress fast`,
		Annotations: map[string]string{annotationOIsFile: "true"},
		Args:        exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := g.format(); err == nil || g.outFlag == "" {
				return usererr.Usage("give the output directory: k2 os build -o DIR")
			}
			o.OutDir, o.Logger = g.outFlag, g.logger()
			start := time.Now()
			m, err := osimage.Build(cmd.Context(), o)
			if err != nil {
				return usererr.Wrap(usererr.KindFailure, err, "")
			}
			t := output.Table(g.stdout)
			fmt.Fprintf(t, "FILE\tSIZE\tSHA256\n")
			fmt.Fprintf(t, "%s\t%s\t%s\n", m.Kernel.File, output.Bytes(m.Kernel.Size), m.Kernel.SHA256[:16])
			fmt.Fprintf(t, "%s\t%s (%s unpacked)\t%s\n", m.Initramfs.File, output.Bytes(m.Initramfs.Size), output.Bytes(m.Initramfs.Uncompressed), m.Initramfs.SHA256[:16])
			if m.Disk != nil {
				fmt.Fprintf(t, "%s\t%s\t%s\n", m.Disk.File, output.Bytes(m.Disk.Size), m.Disk.SHA256[:16])
			}
			t.Flush()
			fmt.Fprintf(g.stderr, "k2 OS (kernel %s, k2 %s) in %s, built in %s; boot with: %s\n", m.KernelRel, m.K2Version, o.OutDir, time.Since(start).Round(100*time.Millisecond), m.Cmdline)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Format, "format", osimage.FormatInitramfs, "initramfs (kernel + initramfs) or raw (also a bootable disk image)")
	f.StringVar(&o.Arch, "arch", "", "architecture (default this machine's; others need every input given)")
	f.StringVar(&o.Kernel, "kernel", "", "the kernel (default the newest /boot/vmlinuz-*)")
	f.StringVar(&o.Modules, "modules", "", "its module tree (default /lib/modules/<its release>)")
	f.StringVar(&o.K2, "k2", "", "the k2 binary to put in (default this one)")
	f.StringVar(&o.Shim, "shim", "", "containerd-shim-runc-v2 (default beside k2, else on PATH)")
	f.StringVar(&o.CNIDir, "cni-dir", "", "the CNI plugins (default /usr/lib/cni or /opt/cni/bin)")
	f.StringVar(&o.Cmdline, "cmdline", osimage.DefaultCmdline, "the kernel command line recorded for boot loaders")
	f.StringVar(&o.Level, "compress", osimage.LevelBest, "initramfs compression: best (zstd), fast (zstd, ~10 % larger, 10× faster to build) or none (boots fastest under emulation)")
	return cmd
}

func newOSConfigCheckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE|-",
		Short: "Validate a machine config and print it without its secrets",
		Long: `Validate a machine config (docs/os.md) as k2 init would: every problem is
reported with its line and field. The config is printed with the join token's
secret and the cluster identity redacted. Exit code 3 when it is invalid.`,
		Example: `  k2 os config check machine.yaml
  k2 os config check - -o json < user-data`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := g.format()
			if err != nil {
				return err
			}
			var b []byte
			if args[0] == "-" {
				b, err = io.ReadAll(io.LimitReader(g.stdin, machineconfig.MaxSize+1))
			} else {
				b, err = os.ReadFile(args[0])
			}
			if err != nil {
				return usererr.Wrap(usererr.KindUsage, err, "")
			}
			c, warns, err := machineconfig.Load(b)
			for _, w := range warns {
				fmt.Fprintln(g.stderr, "warning:", w)
			}
			if err != nil {
				return usererr.Wrap(usererr.KindInvalid, err, "see docs/os.md for the format")
			}
			r := c.Redacted()
			return output.Render(g.stdout, format, r, func(w io.Writer) error {
				b, err := machineconfig.Encode(r, false)
				if err != nil {
					return err
				}
				_, err = w.Write(b)
				return err
			})
		},
	}
}

func newOSConfigGenCmd(g *globals) *cobra.Command {
	var (
		dir string
		o   cluster.GenOptions
	)
	cmd := &cobra.Command{
		Use:   "gen -o DIR --server-address ADDR [--workers N]",
		Short: "Make a cluster identity and machine configs for machines installed by hand",
		Long: `Make a new cluster identity (CA, keys, join token) in DIR/cluster and one machine
config per machine: DIR/control-plane.yaml for the machine that serves the
cluster, DIR/worker-N.yaml for the nodes, and DIR/admin.kubeconfig. Give each
machine its file (a cidata volume's user-data, k2.config=URL, EC2 user-data or
'k2 init --config FILE'). Running it again keeps the identity, so workers can
be added later. k2 deploy makes these itself: this is for machines installed
without a provider. The files hold secrets (mode 0600).`,
		Example: `  k2 os config gen --dir ./lab --server-address 10.0.0.10 --workers 2
  k2 os config gen --dir ./lab --server-address api.lab.internal --data-disk /dev/vdb`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := g.format()
			if err != nil {
				return err
			}
			if dir == "" || o.ServerAddress == "" {
				return usererr.Usage("--dir and --server-address are required")
			}
			if o.DataDisk == "none" {
				o.DataDisk = ""
			}
			res, gerr := cluster.GenerateMachineConfigs(dir, o)
			if gerr != nil {
				return usererr.Wrap(usererr.KindInvalid, gerr, "")
			}
			return output.Render(g.stdout, format, res, func(w io.Writer) error {
				fmt.Fprintln(w, res.ControlPlane)
				for _, p := range res.Workers {
					fmt.Fprintln(w, p)
				}
				fmt.Fprintf(g.stderr, "cluster identity in %s; kubeconfig %s (server %s)\n", filepath.Join(res.Dir, "cluster"), res.Kubeconfig, res.Server)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory for the identity and the configs")
	f.StringVar(&o.ServerAddress, "server-address", "", "the control plane's address or DNS name, as the nodes reach it")
	f.StringVar(&o.ControlPlaneName, "control-plane-name", "control-plane", "the control plane's node name")
	f.IntVar(&o.Workers, "workers", 1, "how many worker configs to write")
	f.StringSliceVar(&o.TLSSANs, "tls-san", nil, "extra names or addresses for the API server certificate")
	f.StringVar(&o.DataDisk, "data-disk", machineconfig.DataDiskAuto, "the disk for /var/lib/k2: auto, a device (/dev/vdb) or none")
	f.StringVar(&o.Runtime, "runtime", "", "the nodes' pod runtime: kubelet (default), auto or sim")
	return cmd
}

func newOSPushCmd(g *globals) *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:   "push DIR REF",
		Short: "Push a k2 OS image (k2 os build's directory) to a registry or the local store",
		Long: `Push the image in DIR as an OCI artifact (artifactType application/vnd.k2.os.v1:
k2os.json as its config, one layer per file — vmlinuz, the initramfs, disk.raw —
titled with the file's name) and print the digest-pinned reference. A REF
without a registry host goes to the local store ($K2_HOME/store), from where
'k2 push' and 'k2 save' carry it like any artifact, to air-gapped sites too.`,
		Example: `  k2 os push out/ localhost:5000/k2/os:v1
  k2 os pull localhost:5000/k2/os@sha256:… -o boot/`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			store, err := g.openStore(cmd.Context())
			if err != nil {
				return err
			}
			t, err := artifact.Locate(store, args[1], rf.options(g))
			if err != nil {
				return err
			}
			d, err := osimage.Push(cmd.Context(), args[0], t)
			if err != nil {
				return err
			}
			pinned := artifact.PinnedRef(t.Ref, d.Digest.String())
			out := struct {
				Ref    string `json:"ref"`
				Pinned string `json:"pinned"`
				Digest string `json:"digest"`
			}{t.Ref, pinned, d.Digest.String()}
			return output.Render(g.stdout, f, out, func(w io.Writer) error {
				_, err := fmt.Fprintln(w, pinned)
				return err
			})
		},
	}
	rf.register(cmd)
	return cmd
}

func newOSPullCmd(g *globals) *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:   "pull REF -o DIR",
		Short: "Pull a k2 OS image into a directory",
		Long: `Pull the k2 OS image REF names (a registry, or the local store) into DIR:
k2os.json and its files, each checked against its digest. Files already there
with the right digest are not fetched again.`,
		Example:     `  k2 os pull localhost:5000/k2/os:v1 -o boot/`,
		Annotations: map[string]string{annotationOIsFile: "true"},
		Args:        exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := g.format(); err == nil || g.outFlag == "" {
				return usererr.Usage("give the output directory: k2 os pull REF -o DIR")
			}
			store, err := g.openStore(cmd.Context())
			if err != nil {
				return err
			}
			t, err := artifact.Locate(store, args[0], rf.options(g))
			if err != nil {
				return err
			}
			m, err := osimage.Pull(cmd.Context(), t, g.outFlag)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s\n%s\n", filepath.Join(g.outFlag, m.Kernel.File), filepath.Join(g.outFlag, m.Initramfs.File))
			if m.Disk != nil {
				fmt.Fprintln(g.stdout, filepath.Join(g.outFlag, m.Disk.File))
			}
			return nil
		},
	}
	rf.register(cmd)
	return cmd
}
