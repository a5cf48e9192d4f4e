package convert

import (
	"fmt"
	"slices"
)

// Methods are the names of the transfer methods (Options.Method).
var Methods = []string{"gmt", "fgmt", "naive", "oracle"}

// CheckMethod returns an error unless name is one of Methods. The error has no package prefix:
// the caller says where the name came from (a flag, a manifest field, an option).
func CheckMethod(name string) error {
	if !slices.Contains(Methods, name) {
		return fmt.Errorf("unknown method %q (want gmt, fgmt, naive or oracle)", name)
	}
	return nil
}
