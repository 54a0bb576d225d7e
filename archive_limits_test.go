package runnerapi

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The directories an entry's name implies are created too, so they count against MaxFiles: otherwise a few deep
// names would create any number of them.
func TestArtifactsExtractCountsImpliedDirectories(t *testing.T) {
	deep := strings.Repeat("d/", 50) + "f"
	b := makeZip(t, []zipEntrySpec{{name: deep, mode: 0o644, content: []byte("x")}})

	dir := filepath.Join(t.TempDir(), "dir")
	err := extractBytes(t, b, dir, 1<<20, 10)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrTooLarge)
	entries, _ := os.ReadDir(dir)
	assert.Empty(t, entries, "nothing is written when the count is over")

	ok := filepath.Join(t.TempDir(), "dir")
	require.NoError(t, extractBytes(t, b, ok, 1<<20, 51))
	assert.FileExists(t, filepath.Join(ok, filepath.FromSlash(deep)))
}

// A link whose target is inside dir by its name, but goes through a link already in dir that leads outside,
// leads outside too.
func TestArtifactsExtractRefusesLinksThroughLinksOutside(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "pre")))
	require.NoError(t, os.Symlink("../"+filepath.Base(outside), filepath.Join(dir, "up")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "in"), 0o755))
	require.NoError(t, os.Symlink("in", filepath.Join(dir, "inlink")))

	for _, target := range []string{"pre/secret", "pre", "sub/../pre/secret", "up/secret"} {
		t.Run(target, func(t *testing.T) {
			b := makeZip(t, []zipEntrySpec{{name: "sub/l", mode: os.ModeSymlink | 0o777, content: []byte("../" + target)}})
			err := extractBytes(t, b, dir, 1<<20, 10)
			if target == "sub/../pre/secret" {
				require.Error(t, err) // ".." after a name, refused by its form
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "outside the directory")
			_, err = os.Lstat(filepath.Join(dir, "sub", "l"))
			assert.True(t, os.IsNotExist(err), "the link was created")
		})
	}

	// Links already in dir that stay inside it, and targets that do not exist yet, are fine.
	b := makeZip(t, []zipEntrySpec{
		{name: "a", mode: os.ModeSymlink | 0o777, content: []byte("inlink/x")},
		{name: "b", mode: os.ModeSymlink | 0o777, content: []byte("later/x")},
	})
	require.NoError(t, extractBytes(t, b, dir, 1<<20, 10))
	got, err := os.Readlink(filepath.Join(dir, "a"))
	require.NoError(t, err)
	assert.Equal(t, "inlink/x", got)
}

// An entry below a file is refused however deep below it is, with names sorting around the file's.
func TestArtifactsExtractRefusesEntriesDeepUnderAFile(t *testing.T) {
	file := func(name string) zipEntrySpec {
		return zipEntrySpec{name: name, mode: 0o644, content: []byte("x")}
	}
	dir := filepath.Join(t.TempDir(), "dir")
	err := extractBytes(t, makeZip(t, []zipEntrySpec{file("f.x"), file("f0"), file("f/a/b/c"), file("f"), file("f-")}), dir, 1<<20, 10)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `entry "f/a/b/c" would be written through "f"`)
	require.NoError(t, extractBytes(t, makeZip(t, []zipEntrySpec{file("f.x"), file("f0"), file("g/a/b/c"), file("f"), file("f-")}), dir, 1<<20, 10))
}

// BenchmarkArtifactsExtractPlanDeepNames plans an archive of a few very deep names, as a hostile coordinator can
// send: the checks must cost in proportion to the names' length, not to its square.
func BenchmarkArtifactsExtractPlanDeepNames(b *testing.B) {
	var specs []zipEntrySpec
	for i := range 4 {
		specs = append(specs, zipEntrySpec{name: strings.Repeat("a/", 30000) + string(rune('a'+i)), mode: 0o644, content: []byte("x")})
	}
	data := makeZip(b, specs)
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(b, err)
	b.ResetTimer()
	for range b.N {
		if _, err := planEntries(zr, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkArtifactsExtractDeepName unpacks one file 2000 directories deep: making its parents must cost in
// proportion to the depth, not to its square.
func BenchmarkArtifactsExtractDeepName(b *testing.B) {
	data := makeZip(b, []zipEntrySpec{{name: strings.Repeat("a/", 2000) + "f", mode: 0o644, content: []byte("x")}})
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(b, err)
	for i := range b.N {
		dir := filepath.Join(b.TempDir(), strconv.Itoa(i))
		if err := extract(zr, dir, 1<<20, -1); err != nil {
			b.Fatal(err)
		}
	}
}
