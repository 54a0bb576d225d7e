package runnerapi

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tinyEntriesZip is an archive of n empty stored files, about 100 bytes each, as archive/zip writes it (in zip64
// form past 65,534 entries).
func tinyEntriesZip(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range n {
		_, err := zw.CreateRaw(&zip.FileHeader{Name: fmt.Sprintf("f%06d", i), Method: zip.Store})
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// endRecords returns end records that claim a central directory of size bytes at offset holding records entries;
// in zip64 form, the zip64 end record starts at recordAt.
func endRecords(zip64 bool, records, size, offset, recordAt uint64) []byte {
	if zip64 {
		return directoryTail(records, size, offset, recordAt)
	}
	le := binary.LittleEndian
	b := le.AppendUint32(nil, endRecordSignature)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint16(b, uint16(records))
	b = le.AppendUint16(b, uint16(records))
	b = le.AppendUint32(b, uint32(size))
	b = le.AppendUint32(b, uint32(offset))
	return le.AppendUint16(b, 0)
}

// withEnd returns archive b, written by archive/zip in plain (not zip64) form, with its end record replaced.
func withEnd(t testing.TB, b []byte, records, size, offset uint64) []byte {
	t.Helper()
	at := len(b) - endRecordLen
	require.Equal(t, uint32(endRecordSignature), binary.LittleEndian.Uint32(b[at:]))
	return append(bytes.Clone(b[:at]), endRecords(false, records, size, offset, 0)...)
}

// allocatedBy returns the bytes of heap that f allocates, in all, so a bound on it bounds the heap's peak too.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// extractServed serves b as build 42's artifacts file and extracts it into a new directory, returning the heap
// the extraction allocated, the directory and the error.
func extractServed(t *testing.T, b []byte, opts *ExtractOptions) (uint64, string, error) {
	t.Helper()
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	})
	c := testClient(t, srv.URL)
	dir := filepath.Join(t.TempDir(), "out")
	var err error
	heap := allocatedBy(func() { _, _, err = c.Artifacts.Extract(context.Background(), 42, dir, opts) })
	return heap, dir, err
}

// heapBound is what an extraction refused from its end records may allocate: the download's buffers, the end
// records' search and the walk through the directory, whatever the archive claims.
const heapBound = 4 << 20

// An archive is refused from what its end records claim, before its central directory is parsed: too many entries,
// a directory larger than the entries allowed can need, or one that does not fit in the file. archive/zip would
// have allocated for every record it read (2 GiB for a 470 MB archive of 10 M records).
func TestArtifactsExtractRefusesFromTheDirectoryEnd(t *testing.T) {
	stub := make([]byte, 1000)
	tests := []struct {
		name     string
		archive  []byte
		maxFiles int
		tooLarge bool
	}{
		{name: "zip64: 10 M entries in 470 MB", archive: append(stub, endRecords(true, 10_000_000, 470_000_000, 0, 1000)...), tooLarge: true},
		{name: "zip64: few entries, a directory of a TB", archive: append(stub, endRecords(true, 1000, 1<<40, 0, 1000)...), tooLarge: true},
		{name: "more entries than MaxFiles", archive: append(stub, endRecords(false, 60_000, 60_000*46, 0, 0)...), maxFiles: 1000, tooLarge: true},
		{name: "a directory larger than the file", archive: append(stub, endRecords(true, 100, 100*46, 0, 1000)...)},
		{name: "a directory past the end records", archive: append(stub, endRecords(false, 10, 460, 900, 0)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			heap, dir, err := extractServed(t, tt.archive, &ExtractOptions{MaxFiles: tt.maxFiles})
			require.Error(t, err)
			if tt.tooLarge {
				assert.ErrorIs(t, err, ErrTooLarge)
			} else {
				assert.NotErrorIs(t, err, ErrTooLarge)
				assert.Contains(t, err.Error(), "not a zip archive")
			}
			t.Logf("%v; heap allocated: %d KiB", err, heap>>10)
			assert.Less(t, heap, uint64(heapBound), "heap allocated")
			assert.NoDirExists(t, dir)
		})
	}
}

// A real archive of many tiny entries, over MaxFiles, is refused by its count, or when its end record lies about
// the count, by the walk through its directory, which holds no record; one whose end record claims a few of its
// last records as the whole directory gets archive/zip to read those few only. The heap stays within a bound
// that archive/zip's reading of every record (some 25 MB here) would break.
func TestArtifactsExtractManyEntriesKeepsHeapBounded(t *testing.T) {
	const entries = 100_000
	b := tinyEntriesZip(t, entries)
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	require.Len(t, zr.File, entries)
	// The plain end of the same archive: archive/zip's writer ends it in zip64 form, which is dropped here.
	dirStart, dirSize := int64(0), int64(0)
	for i := range zr.File {
		dirSize += directoryRecordLen + int64(len(zr.File[i].Name))
	}
	dirStart = int64(bytes.LastIndex(b, binary.LittleEndian.AppendUint32(nil, zip64EndRecordSignature))) - dirSize
	plain := append(bytes.Clone(b[:dirStart+dirSize]), endRecords(false, entries, uint64(dirSize), uint64(dirStart), 0)...)
	last5 := uint64(5 * (directoryRecordLen + len(zr.File[0].Name)))

	tests := []struct {
		name     string
		archive  []byte
		maxFiles int
		tooLarge bool
	}{
		{name: "counted over MaxFiles", archive: b, maxFiles: 1000, tooLarge: true},
		{name: "a count that lies", archive: withEnd(t, plain, 5, uint64(dirSize), uint64(dirStart)), maxFiles: 2000, tooLarge: true},
		{name: "a directory size that lies", archive: withEnd(t, plain, 5, last5, uint64(dirStart)), maxFiles: 2000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			heap, dir, err := extractServed(t, tt.archive, &ExtractOptions{MaxFiles: tt.maxFiles})
			require.Error(t, err)
			if tt.tooLarge {
				assert.ErrorIs(t, err, ErrTooLarge)
			}
			t.Logf("%v; heap allocated: %d KiB", err, heap>>10)
			assert.Less(t, heap, uint64(heapBound), "heap allocated")
			entries, _ := os.ReadDir(dir)
			assert.Empty(t, entries)
		})
	}
}

// What archive/zip writes reads back whole through the view: zip64 archives, archives with a comment or data
// before them, empty ones; names and extra fields up to the limits of a legal entry, not beyond.
func TestArtifactsOpenArchiveReadsWhatZipWrites(t *testing.T) {
	t.Run("zip64, 70,000 entries", func(t *testing.T) {
		b := tinyEntriesZip(t, 70_000)
		zr, err := openArchive(bytes.NewReader(b), int64(len(b)), DefaultExtractMaxFiles)
		require.NoError(t, err)
		require.Len(t, zr.File, 70_000)
		assert.Equal(t, "f000000", zr.File[0].Name)
		assert.Equal(t, "f069999", zr.File[69_999].Name)
		_, err = openArchive(bytes.NewReader(b), int64(len(b)), 69_999)
		assert.ErrorIs(t, err, ErrTooLarge)
	})
	t.Run("comment and data before the archive", func(t *testing.T) {
		var buf bytes.Buffer
		buf.WriteString("#!/bin/sh\nexit 0\n")
		zw := zip.NewWriter(&buf)
		zw.SetOffset(int64(buf.Len()))
		w, err := zw.Create("dir/hello.txt")
		require.NoError(t, err)
		_, _ = io.WriteString(w, "hello")
		require.NoError(t, zw.SetComment("made by a test"))
		require.NoError(t, zw.Close())
		stubbed := buf.Bytes()
		// An archive whose offsets count from where it starts, not from the start of the file.
		relative := append([]byte("STUB"), makeZip(t, []zipEntrySpec{{name: "hello.txt", mode: 0o644, content: []byte("hello")}})...)
		for name, b := range map[string][]byte{"offsets from the file": stubbed, "offsets from the archive": relative} {
			zr, err := openArchive(bytes.NewReader(b), int64(len(b)), 10)
			require.NoError(t, err, name)
			require.Len(t, zr.File, 1, name)
			rc, err := zr.File[0].Open()
			require.NoError(t, err, name)
			got, err := io.ReadAll(rc)
			require.NoError(t, err, name)
			assert.Equal(t, "hello", string(got), name)
		}
	})
	t.Run("empty", func(t *testing.T) {
		b := tinyEntriesZip(t, 0)
		zr, err := openArchive(bytes.NewReader(b), int64(len(b)), 10)
		require.NoError(t, err)
		assert.Empty(t, zr.File)
	})
	t.Run("name and extra limits", func(t *testing.T) {
		archive := func(name string, extra []byte) []byte {
			var buf bytes.Buffer
			zw := zip.NewWriter(&buf)
			_, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Store, Extra: extra})
			require.NoError(t, err)
			require.NoError(t, zw.Close())
			return buf.Bytes()
		}
		// An unknown extra field of n bytes in all: a header of 4, then data.
		extra := func(n int) []byte {
			return append(binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(nil, 0xcafe), uint16(n-4)), make([]byte, n-4)...)
		}
		long := strings.Repeat("d/", maxEntryName/2-1) + "ab"
		require.Len(t, long, maxEntryName)
		for _, tt := range []struct {
			b  []byte
			ok bool
		}{
			{archive(long, nil), true},
			{archive(long+"c", nil), false},
			{archive("f", extra(maxEntryExtra)), true},
			{archive("f", extra(maxEntryExtra+1)), false},
		} {
			_, err := openArchive(bytes.NewReader(tt.b), int64(len(tt.b)), 10)
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, ErrTooLarge)
			}
			// No bound on the entries is no bound on their records either.
			_, err = openArchive(bytes.NewReader(tt.b), int64(len(tt.b)), -1)
			assert.NoError(t, err)
		}
	})
}

// FuzzOpenArchive feeds openArchive arbitrary bytes: no panic, and an archive it opens has no more entries than
// allowed, each of which can be opened and read without harm.
func FuzzOpenArchive(f *testing.F) {
	f.Add(makeZip(f, []zipEntrySpec{{name: "a/b", mode: 0o644, content: []byte("hello")}, {name: "a/", mode: os.ModeDir | 0o755}}))
	f.Add(tinyEntriesZip(f, 3))
	f.Add(append(make([]byte, 64), endRecords(true, 3, 138, 0, 64)...))
	f.Add(append(make([]byte, 64), endRecords(false, 2, 60, 4, 0)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		zr, err := openArchive(bytes.NewReader(b), int64(len(b)), 10)
		if err != nil {
			return
		}
		if len(zr.File) > 10 {
			t.Fatalf("%d entries, over the limit of 10", len(zr.File))
		}
		for _, f := range zr.File {
			if rc, err := f.Open(); err == nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(rc, 1<<16))
				_ = rc.Close()
			}
		}
	})
}

// The download's limit on an archive's size leaves room for MaxFiles entries with the longest legal names and
// extra fields, which openArchive accepts: a legal archive is not refused while it downloads.
func TestArtifactsArchiveLimitHoldsLegalEntries(t *testing.T) {
	const n = 1000
	extra := append(binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(nil, 0xcafe), maxEntryExtra-4), make([]byte, maxEntryExtra-4)...)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range n {
		name := fmt.Sprintf("%s%06d", strings.Repeat("d/", (maxEntryName-6)/2), i)
		require.Len(t, name, maxEntryName)
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Extra: extra})
		require.NoError(t, err)
		_, _ = w.Write([]byte{byte(i)})
	}
	require.NoError(t, zw.Close())
	b := buf.Bytes()
	zr, err := openArchive(bytes.NewReader(b), int64(len(b)), n)
	require.NoError(t, err)
	require.Len(t, zr.File, n)
	assert.LessOrEqual(t, int64(len(b)), archiveLimit(n, n))
	t.Logf("%d bytes, limit %d", len(b), archiveLimit(n, n))
}
