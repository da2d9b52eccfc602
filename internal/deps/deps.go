//go:build tools

// Package deps pins, for the length of the provider/OS/TUI work, the modules
// that work needs, so that go.mod changes once instead of in every branch.
// Nothing imports this package and the "tools" tag keeps it out of every
// build; each import goes once real code uses the module.
package deps

import (
	_ "github.com/aws/aws-sdk-go-v2/config"
	_ "github.com/aws/aws-sdk-go-v2/credentials"
	_ "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	_ "github.com/aws/aws-sdk-go-v2/service/ec2"
	_ "github.com/aws/aws-sdk-go-v2/service/s3"
	_ "github.com/aws/aws-sdk-go-v2/service/ssm"
	_ "github.com/charmbracelet/bubbles/spinner"
	_ "github.com/charmbracelet/bubbletea"
	_ "github.com/charmbracelet/huh"
	_ "github.com/charmbracelet/lipgloss"
	_ "github.com/charmbracelet/x/exp/teatest"
	_ "github.com/digitalocean/go-libvirt"
	_ "github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	_ "github.com/insomniacslk/dhcp/dhcpv4/server4"
	_ "github.com/pin/tftp/v3"
	_ "github.com/siderolabs/talos/pkg/machinery/config/generate"
	_ "github.com/sigstore/sigstore-go/pkg/sign"
	_ "github.com/sigstore/sigstore-go/pkg/verify"
	_ "github.com/stmcginnis/gofish"
	_ "github.com/u-root/u-root/pkg/cpio"
	_ "github.com/u-root/u-root/pkg/ldd"
	_ "github.com/u-root/u-root/pkg/kmodule"
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "go.uber.org/goleak"
)
