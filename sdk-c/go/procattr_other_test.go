//go:build !linux

package leasehold

import "os/exec"

func dieWithUs(*exec.Cmd) {}
