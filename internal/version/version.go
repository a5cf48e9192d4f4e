// Package version describes the running ltransfer binary: the module version the go command
// stamped into it, the version-control revision it was built from, and its build (pure Go, or
// cgo with OpenBLAS). `ltransfer --version` prints it and report.json records it.
package version

import (
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/ltransfer/ltransfer/graph"
)

// Info is what the binary knows about its own build.
type Info struct {
	// Version is the main module's version: a release tag such as v0.3.0 (go install ...@v0.3.0),
	// a pseudo-version, or "(devel)" when nothing stamped one (go test, go run without VCS).
	Version string
	// Revision is the VCS commit the binary was built from, when known: stamped by the go
	// command in a checkout (-buildvcs), or the commit named by a pseudo-version.
	Revision string
	// Time is the commit's time (RFC 3339), when stamped; Modified says that the checkout had
	// uncommitted changes.
	Time     string
	Modified bool
	// Build is "pure Go" or "OpenBLAS" (-tags openblas); Go the toolchain, OS and architecture.
	Build, Go string
}

// pseudo matches the commit hash at the end of a pseudo-version (v0.0.0-20261204203000-abcdef123456).
var pseudo = regexp.MustCompile(`[-.]\d{14}-([0-9a-f]{12})(\+incompatible)?$`)

// Get reads the running binary's build information.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return fromBuildInfo(bi, graph.BLAS)
}

// fromBuildInfo reads bi (nil: none) of a build whose BLAS is blas (graph.BLAS).
func fromBuildInfo(bi *debug.BuildInfo, blas string) Info {
	info := Info{Version: "(devel)", Build: "pure Go", Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if blas == "openblas" {
		info.Build = "OpenBLAS"
	}
	if bi == nil {
		return info
	}
	if v := bi.Main.Version; v != "" {
		info.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	if m := pseudo.FindStringSubmatch(info.Version); info.Revision == "" && m != nil {
		info.Revision = m[1]
	}
	return info
}

// String is the one-line form: "v0.3.0, revision 1a2b3c4 (2026-12-04T20:30:00Z, modified),
// pure Go build, go1.26.0 linux/amd64".
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Version)
	rev := i.Revision
	if rev == "" {
		rev = "unknown"
	}
	fmt.Fprintf(&b, ", revision %s", rev)
	var notes []string
	if i.Time != "" {
		notes = append(notes, i.Time)
	}
	if i.Modified {
		notes = append(notes, "modified")
	}
	if len(notes) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(notes, ", "))
	}
	fmt.Fprintf(&b, ", %s build, %s", i.Build, i.Go)
	return b.String()
}
