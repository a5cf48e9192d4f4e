package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "1a2b3c4d5e6f7a8b9c0d"}, {Key: "vcs.time", Value: "2026-12-04T20:30:00Z"}, {Key: "vcs.modified", Value: "true"}}
	cases := []struct {
		bi       *debug.BuildInfo
		blas     string
		want     Info
		contains string
	}{
		{nil, "gonum", Info{Version: "(devel)", Build: "pure Go"}, "(devel), revision unknown, pure Go build"},
		// go install ...@v0.3.0: a tag, no VCS settings.
		{&debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}}, "openblas", Info{Version: "v0.3.0", Build: "OpenBLAS"}, "v0.3.0, revision unknown, OpenBLAS build"},
		// go install ...@main: a pseudo-version names the commit.
		{&debug.BuildInfo{Main: debug.Module{Version: "v0.3.1-0.20261204203000-abcdef123456"}}, "gonum",
			Info{Version: "v0.3.1-0.20261204203000-abcdef123456", Revision: "abcdef123456", Build: "pure Go"}, "revision abcdef123456, pure Go"},
		// go build in a checkout: the go command stamps the revision.
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs}, "gonum",
			Info{Version: "(devel)", Revision: "1a2b3c4d5e6f7a8b9c0d", Time: "2026-12-04T20:30:00Z", Modified: true, Build: "pure Go"},
			"(devel), revision 1a2b3c4d5e6f7a8b9c0d (2026-12-04T20:30:00Z, modified), pure Go build, go"},
	}
	for _, tc := range cases {
		got := fromBuildInfo(tc.bi, tc.blas)
		tc.want.Go = got.Go
		if got != tc.want {
			t.Errorf("%+v: got %+v, want %+v", tc.bi, got, tc.want)
		}
		if !strings.Contains(got.String(), tc.contains) {
			t.Errorf("%q does not contain %q", got.String(), tc.contains)
		}
	}
}
