package runnerapi

import (
	"archive/zip"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// ErrNoArtifactFiles is returned by UploadPaths when no path matches a file, so there is nothing to upload.
var ErrNoArtifactFiles = errors.New("runnerapi: no artifacts files match the paths")

// UploadPaths zips the given paths under root and streams the archive straight into the upload of build id's artifacts
// file, with no temporary file. Each path is a file, a directory (taken with everything below it) or a pattern of
// filepath.Match, relative to root, as in a build's options.artifacts.paths; none may lead outside root, whether by
// "..", an absolute path or a symlinked directory. Symbolic links are stored as links, never followed, and a file
// replaced by a link or another file between the moment it is found and the moment it is archived fails the upload;
// files, directories and links keep their modes. Paths that match nothing are skipped; when nothing matches at all the
// error matches ErrNoArtifactFiles. Only the paths given are taken: options.artifacts.untracked (every file git does
// not track) needs a git checkout to answer and is left to the caller, who can list those files and pass them as paths.
//
// The archive is built again for a retry, so transient failures are retried like UploadFile's.
func (s *ArtifactsService) UploadPaths(ctx context.Context, id int64, root string, paths []string, opts *UploadOptions, reqOpts ...RequestOption) (*Build, *Response, error) {
	if opts == nil {
		opts = &UploadOptions{}
	}
	entries, err := collectFiles(root, paths)
	if err != nil {
		return nil, nil, fmt.Errorf("runnerapi: UploadPaths: %w", err)
	}
	if len(entries) == 0 {
		return nil, nil, fmt.Errorf("%w: %q under %s", ErrNoArtifactFiles, paths, root)
	}
	src := uploadSource{
		what:       "the files to archive",
		size:       -1,
		replayable: true,
		open: func() (io.Reader, io.Closer, error) {
			z := startZip(entries)
			return z, z, nil
		},
	}
	return s.upload(ctx, "UploadPaths", id, cmp.Or(opts.Filename, DefaultArtifactsFilename), src, opts, reqOpts)
}

// zipEntry is one file, directory or link to archive.
type zipEntry struct {
	abs  string
	name string // slash-separated, relative to the root; directories end in '/'
	info fs.FileInfo
}

// collectFiles resolves patterns under root into the entries to archive, in a stable order and without duplicates.
func collectFiles(root string, patterns []string) ([]zipEntry, error) {
	if root == "" {
		return nil, errors.New("empty root")
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	// Everything is resolved below the real root, so that a root reached through a link is walked like any other.
	realRoot, err := filepath.EvalSymlinks(absRoot)
	if err != nil {
		return nil, err
	}
	absRoot = realRoot
	var out []zipEntry
	seen := make(map[string]bool)
	add := func(abs string, info fs.FileInfo) error {
		rel, err := filepath.Rel(absRoot, abs)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		switch {
		case info.IsDir():
			name += "/"
		case info.Mode().IsRegular(), info.Mode()&fs.ModeSymlink != 0:
		default:
			return nil // devices, sockets and pipes are not build output
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, zipEntry{abs: abs, name: name, info: info})
		}
		return nil
	}
	for _, pat := range patterns {
		p := filepath.FromSlash(pat)
		if pat == "" || filepath.IsAbs(p) || !filepath.IsLocal(filepath.Clean(p)) && filepath.Clean(p) != "." {
			return nil, fmt.Errorf("path %q is not inside %s", pat, root)
		}
		matches, err := filepath.Glob(filepath.Join(absRoot, p))
		if err != nil {
			return nil, fmt.Errorf("path %q: %w", pat, err)
		}
		for _, m := range matches {
			// The pattern is local, but a directory on the way may be a symlink to elsewhere.
			realParent, err := filepath.EvalSymlinks(filepath.Dir(m))
			if err != nil {
				return nil, err
			}
			if m != absRoot && !isWithin(realRoot, realParent) {
				return nil, fmt.Errorf("path %q leads outside %s through a symbolic link", pat, root)
			}
			info, err := os.Lstat(m)
			if err != nil {
				return nil, err
			}
			if !info.IsDir() {
				if err := add(m, info); err != nil {
					return nil, err
				}
				continue
			}
			// WalkDir does not follow symlinks, so nothing below m leaves it.
			err = filepath.WalkDir(m, func(p string, de fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				info, err := de.Info()
				if err != nil {
					return err
				}
				return add(p, info)
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// isWithin reports whether p is root or below it; both are clean absolute paths.
func isWithin(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}

// errArtZipClosed ends an archive's writer once nobody reads the archive any more.
var errArtZipClosed = errors.New("archive stream closed")

// zipStream is an archive written by its own goroutine as it is read. Close stops that goroutine and waits for
// it, so none outlives the upload.
type zipStream struct {
	pr   *io.PipeReader
	done chan struct{}
}

func startZip(entries []zipEntry) *zipStream {
	pr, pw := io.Pipe()
	z := &zipStream{pr: pr, done: make(chan struct{})}
	go func() {
		defer close(z.done)
		// A nil error makes the reader see io.EOF after the central directory.
		_ = pw.CloseWithError(writeZip(pw, entries))
	}()
	return z
}

func (z *zipStream) Read(p []byte) (int, error) { return z.pr.Read(p) }

// Close stops the writer, whose next write fails, and waits for it to end.
func (z *zipStream) Close() error {
	_ = z.pr.CloseWithError(errArtZipClosed)
	<-z.done
	return nil
}

// writeZip writes the entries as a zip archive to w.
func writeZip(w io.Writer, entries []zipEntry) error {
	zw := zip.NewWriter(w)
	for _, e := range entries {
		hdr, err := zip.FileInfoHeader(e.info)
		if err != nil {
			return err
		}
		hdr.Name = e.name
		switch {
		case e.info.IsDir():
			hdr.Method = zip.Store
			if _, err := zw.CreateHeader(hdr); err != nil {
				return err
			}
		case e.info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(e.abs)
			if err != nil {
				return err
			}
			hdr.Method = zip.Store
			fw, err := zw.CreateHeader(hdr)
			if err != nil {
				return err
			}
			if _, err := io.WriteString(fw, target); err != nil {
				return err
			}
		default:
			hdr.Method = zip.Deflate
			if err := zipFile(zw, hdr, e); err != nil {
				return err
			}
		}
	}
	return zw.Close()
}

// zipFile adds the regular file e to the archive. The file opened must be the one collected: a path swapped
// meanwhile for a link, or for another file, is an error rather than whatever it now leads to.
func zipFile(zw *zip.Writer, hdr *zip.FileHeader, e zipEntry) error {
	f, err := os.Open(e.abs)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !os.SameFile(fi, e.info) {
		return fmt.Errorf("%s changed while it was being archived", e.name)
	}
	fw, err := zw.CreateHeader(hdr)
	if err != nil {
		return err
	}
	_, err = io.Copy(fw, f)
	return err
}

// Defaults of ExtractOptions.
const (
	// DefaultExtractMaxSize bounds the bytes Extract writes unless told otherwise: 4 GiB.
	DefaultExtractMaxSize = 4 << 30
	// DefaultExtractMaxFiles bounds the entries Extract creates unless told otherwise.
	DefaultExtractMaxFiles = 100_000
)

// maxLinkTarget bounds a symbolic link's target read from an archive.
const maxLinkTarget = 4096

// ExtractOptions are the optional parameters of Extract.
type ExtractOptions struct {
	// MaxSize bounds the total bytes of the files unpacked, counted as they are written: DefaultExtractMaxSize
	// when zero, no bound when negative.
	MaxSize int64
	// MaxFiles bounds the number of entries (files, directories and links), counting the directories their names
	// imply: DefaultExtractMaxFiles when zero, no bound when negative. It bounds the archive's central directory
	// too, checked from the archive's end records before the directory is read: MaxFiles entries of legal names
	// (4096 bytes at most) with up to 1 KiB of extra fields and comment each, so that reading the directory takes
	// at most about 10 KiB of memory per entry allowed, whatever the archive claims.
	MaxFiles int
	// TempDir is where the archive is kept while it is unpacked (a zip is read from its end): os.TempDir() when
	// empty. The file is removed before Extract returns. An archive larger than MaxSize and MaxFiles allow it to
	// be (its content plus the headers of as many legal entries, about 10 KiB each) is refused while it downloads.
	TempDir string
}

// Extract downloads build id's artifacts file, a zip archive, and unpacks it into dir, which is created if needed.
// Files already in dir with the same names are replaced. It refuses, with an error saying why and before writing
// anything where it can: entries named with ".." or an absolute path, symbolic links whose target leads outside
// dir, entries that would be written through a symbolic link, duplicate entries, and archives with more entries or
// bytes than opts allows, or entries with names or extra fields longer than a legal entry's (those errors match
// ErrTooLarge, and those of entries are told before the archive's directory is parsed). A failure while writing (the archive holding more bytes
// than it claims, a full disk) leaves the entries already unpacked, but never a partial file. Modes are kept,
// without setuid, setgid and sticky bits.
// The archive is downloaded to a temporary file first, and a dropped connection is resumed.
func (s *ArtifactsService) Extract(ctx context.Context, id int64, dir string, opts *ExtractOptions, reqOpts ...RequestOption) (*ArtifactInfo, *Response, error) {
	if opts == nil {
		opts = &ExtractOptions{}
	}
	maxSize, maxFiles := opts.MaxSize, opts.MaxFiles
	if maxSize == 0 {
		maxSize = DefaultExtractMaxSize
	}
	if maxFiles == 0 {
		maxFiles = DefaultExtractMaxFiles
	}
	tmp, err := os.CreateTemp(opts.TempDir, "runnerapi-artifacts-*.zip")
	if err != nil {
		return nil, nil, fmt.Errorf("runnerapi: Extract: %w", err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	d, err := s.downloadToTemp(ctx, "Extract", id, tmp, archiveLimit(maxSize, maxFiles), newCallConfig(reqOpts))
	if err != nil {
		return nil, d.response(), err
	}
	zr, err := openArchive(tmp, d.off, maxFiles)
	if err != nil {
		if !errors.Is(err, ErrTooLarge) {
			return nil, d.resp, fmt.Errorf("runnerapi: Extract: build %d: the artifacts file is not a zip archive: %w", id, err)
		}
		return nil, d.resp, fmt.Errorf("runnerapi: Extract: build %d: %w", id, err)
	}
	if err := extract(zr, dir, maxSize, maxFiles); err != nil {
		return nil, d.resp, fmt.Errorf("runnerapi: Extract: build %d: %w", id, err)
	}
	info := d.info
	return &info, d.resp, nil
}

// archiveLimit bounds the size of an archive that can hold at most maxSize bytes in maxFiles entries, so that a
// hostile answer cannot fill the temporary directory before the limits on what it holds apply: the content, what
// deflate may add to incompressible data, and per entry what a legal entry's headers take (its local header and
// central directory record, each with the name and extra field, and a data descriptor), plus a MiB for the end
// records. 0 is no bound.
func archiveLimit(maxSize int64, maxFiles int) int64 {
	if maxSize < 0 || maxFiles < 0 {
		return 0
	}
	const perEntry = 2*maxDirectoryRecord + 24
	if int64(maxFiles) > (math.MaxInt64-maxSize-maxSize/64-1<<20)/perEntry {
		return 0
	}
	return maxSize + maxSize/64 + int64(maxFiles)*perEntry + 1<<20
}

// plannedEntry is an archive entry checked and ready to unpack.
type plannedEntry struct {
	f      *zip.File
	name   string // local path below dir, with the OS separator
	mode   fs.FileMode
	target string // of a symlink
}

// extract unpacks zr into dir. Every entry is checked before anything is written, except the bytes the files
// really hold, which are counted as they are written.
func extract(zr *zip.Reader, dir string, maxSize int64, maxFiles int) error {
	if maxFiles >= 0 && len(zr.File) > maxFiles {
		return fmt.Errorf("the archive holds %d entries, over the limit of %d: %w", len(zr.File), maxFiles, ErrTooLarge)
	}
	plan, err := planEntries(zr, maxSize)
	if err != nil {
		return err
	}
	if maxFiles >= 0 {
		// The directories that names imply are created too: a few deep names must not bypass the count.
		created := make(map[string]bool, len(plan))
		for _, e := range plan {
			// Names are clean, so a parent is the name up to its last separator.
			for p := e.name; !created[p]; {
				created[p] = true
				if len(created) > maxFiles {
					return fmt.Errorf("the archive creates more than %d files, directories and links: %w", maxFiles, ErrTooLarge)
				}
				i := strings.LastIndexByte(p, filepath.Separator)
				if i < 0 {
					break
				}
				p = p[:i]
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	var (
		written int64
		dirs    []plannedEntry
		made    = make(map[string]bool)
	)
	for _, e := range plan {
		if err := mkdirParents(root, e.name, made); err != nil {
			return err
		}
		switch {
		case e.mode.IsDir():
			if err := mkdir(root, e.name, e.name); err != nil {
				return err
			}
			dirs = append(dirs, e)
		case e.mode&fs.ModeSymlink != 0:
			if err := linkStaysInside(root, e); err != nil {
				return err
			}
			if err := removeNonDir(root, e.name); err != nil {
				return err
			}
			if err := os.Symlink(e.target, filepath.Join(dir, e.name)); err != nil {
				return err
			}
		default:
			n, err := writeEntry(root, e, maxSize, written)
			written += n
			if err != nil {
				return err
			}
		}
	}
	// Last, and deepest first, so that a read-only directory does not stop its own contents from being written.
	sort.SliceStable(dirs, func(i, j int) bool {
		return strings.Count(dirs[i].name, string(filepath.Separator)) > strings.Count(dirs[j].name, string(filepath.Separator))
	})
	for _, e := range dirs {
		if err := chmod(root, e.name, e.mode.Perm()); err != nil {
			return err
		}
	}
	return nil
}

// planEntries checks every entry's name, type and link target, and the sizes the archive claims.
func planEntries(zr *zip.Reader, maxSize int64) ([]plannedEntry, error) {
	var (
		plan    []plannedEntry
		claimed uint64
	)
	kinds := make(map[string]fs.FileMode) // entry name to its type, for collisions
	for _, f := range zr.File {
		name, err := entryPath(f.Name)
		if err != nil {
			return nil, err
		}
		if name == "." {
			continue
		}
		mode := f.Mode()
		e := plannedEntry{f: f, name: name, mode: mode.Type() | mode.Perm()}
		switch {
		case mode.IsDir():
		case mode&fs.ModeSymlink != 0:
			if e.target, err = linkTarget(f, name); err != nil {
				return nil, err
			}
		case mode.IsRegular():
			if claimed += f.UncompressedSize64; claimed < f.UncompressedSize64 {
				claimed = ^uint64(0)
			}
		default:
			return nil, fmt.Errorf("entry %q: unsupported file type %v", f.Name, mode.Type())
		}
		if _, dup := kinds[name]; dup {
			return nil, fmt.Errorf("entry %q appears twice", f.Name)
		}
		kinds[name] = mode.Type()
		plan = append(plan, e)
	}
	if maxSize >= 0 && claimed > uint64(maxSize) {
		return nil, fmt.Errorf("the archive unpacks to %d bytes, over the limit of %d: %w", claimed, maxSize, ErrTooLarge)
	}
	// An entry is written through a file or link when its name starts with that one's and a separator. Sorted,
	// such names follow the file's at once: the check is linear in the names' length, however deep they are.
	names := make([]string, 0, len(kinds))
	for name := range kinds {
		names = append(names, name)
	}
	sort.Strings(names)
	sep := string(filepath.Separator)
	for _, name := range names {
		if kinds[name].IsDir() {
			continue
		}
		under := name + sep
		i := sort.SearchStrings(names, under)
		if i < len(names) && strings.HasPrefix(names[i], under) {
			return nil, fmt.Errorf("entry %q would be written through %q, which is not a directory", filepath.ToSlash(names[i]), filepath.ToSlash(name))
		}
	}
	return plan, nil
}

// entryPath turns an entry's name into a path below the extraction directory ("." for the directory itself),
// refusing names that would lead anywhere else.
func entryPath(name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("an entry has an empty name")
	case strings.ContainsRune(name, 0) || strings.ContainsRune(name, '\\'):
		return "", fmt.Errorf("entry %q: a name may not hold NUL or '\\'", name)
	case path.IsAbs(name) || filepath.IsAbs(name) || filepath.VolumeName(name) != "":
		return "", fmt.Errorf("entry %q: absolute paths are refused", name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("entry %q: paths with \"..\" are refused", name)
		}
	}
	p := path.Clean(name)
	if p == "." {
		return ".", nil
	}
	local := filepath.FromSlash(p)
	if !filepath.IsLocal(local) {
		return "", fmt.Errorf("entry %q: the path leads outside the directory", name)
	}
	return local, nil
}

// linkTarget reads and checks a symlink entry's target: relative, and leading below the extraction directory.
// ".." may only come first: after a name, which may itself be a link, it would no longer mean what it says.
func linkTarget(f *zip.File, name string) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", fmt.Errorf("entry %q: %w", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
	if err != nil {
		return "", fmt.Errorf("entry %q: %w", f.Name, err)
	}
	target := string(b)
	switch {
	case len(b) > maxLinkTarget:
		return "", fmt.Errorf("symbolic link %q: target longer than %d bytes", f.Name, maxLinkTarget)
	case target == "" || strings.ContainsRune(target, 0):
		return "", fmt.Errorf("symbolic link %q: empty or NUL in target", f.Name)
	case path.IsAbs(target) || filepath.IsAbs(target):
		return "", fmt.Errorf("symbolic link %q points to the absolute path %q, outside the directory", f.Name, target)
	}
	named := false
	for _, el := range strings.Split(target, "/") {
		switch {
		case el == "..":
			if named {
				return "", fmt.Errorf("symbolic link %q: target %q has \"..\" after a name", f.Name, target)
			}
		case el != "" && el != ".":
			named = true
		}
	}
	if resolved := path.Join(path.Dir(filepath.ToSlash(name)), target); !filepath.IsLocal(filepath.FromSlash(resolved)) && resolved != "." {
		return "", fmt.Errorf("symbolic link %q points to %q, outside the directory", f.Name, target)
	}
	return target, nil
}

// linkStaysInside refuses a link whose target, inside dir by its name, goes through a link already there that
// leads outside dir. Links of the archive need no such check: each one was checked the same way.
func linkStaysInside(root *os.Root, e plannedEntry) error {
	resolved := filepath.FromSlash(path.Join(path.Dir(filepath.ToSlash(e.name)), e.target))
	// os.Root follows links only while they stay inside: resolving the target fails on the first that leaves,
	// before any missing part, which later entries may still create.
	_, err := root.Stat(resolved)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	return fmt.Errorf("symbolic link %q points to %q, which leads outside the directory through a link already there: %w", e.f.Name, e.target, err)
}

// mkdirParents makes the directories above name, refusing to go through anything but a directory. It goes down
// one directory at a time, so that a deep name costs in proportion to its depth, not to its square; made holds the
// parents already done.
func mkdirParents(root *os.Root, name string, made map[string]bool) error {
	parent := filepath.Dir(name)
	if parent == "." || made[parent] {
		return nil
	}
	r := root
	defer func() {
		if r != root {
			_ = r.Close()
		}
	}()
	rest, done := parent, 0
	for {
		el, tail, more := strings.Cut(rest, string(filepath.Separator))
		done += len(el)
		if err := mkdir(r, el, parent[:done]); err != nil {
			return err
		}
		if !more {
			break
		}
		next, err := r.OpenRoot(el)
		if err != nil {
			return err
		}
		if r != root {
			_ = r.Close()
		}
		r, rest, done = next, tail, done+1
	}
	made[parent] = true
	return nil
}

// mkdir makes directory name unless a real directory is already there; errors call it shown.
func mkdir(root *os.Root, name, shown string) error {
	fi, err := root.Lstat(name)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%q is a symbolic link: refusing to write through it", filepath.ToSlash(shown))
	case err == nil:
		return fmt.Errorf("%q exists and is not a directory", filepath.ToSlash(shown))
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return root.Mkdir(name, 0o755)
}

// removeNonDir makes room for a file or link at name, replacing (never following) what is there.
func removeNonDir(root *os.Root, name string) error {
	fi, err := root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("%q exists and is a directory", filepath.ToSlash(name))
	}
	return root.Remove(name)
}

// writeEntry unpacks a regular file, counting the bytes written against maxSize, and removes it on failure.
func writeEntry(root *os.Root, e plannedEntry, maxSize, written int64) (int64, error) {
	if err := removeNonDir(root, e.name); err != nil {
		return 0, err
	}
	rc, err := e.f.Open()
	if err != nil {
		return 0, fmt.Errorf("entry %q: %w", e.f.Name, err)
	}
	defer rc.Close()
	out, err := root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	var src io.Reader = rc
	if maxSize >= 0 {
		src = io.LimitReader(rc, maxSize-written+1)
	}
	n, err := io.Copy(out, src)
	switch {
	case err != nil:
		err = fmt.Errorf("entry %q: %w", e.f.Name, err)
	case maxSize >= 0 && written+n > maxSize:
		err = fmt.Errorf("entry %q: the archive unpacks to more than %d bytes: %w", e.f.Name, maxSize, ErrTooLarge)
	default:
		err = out.Chmod(e.mode.Perm())
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = root.Remove(e.name)
	}
	return n, err
}

// chmod sets a directory's mode through a handle, so that it cannot be redirected by a link.
func chmod(root *os.Root, name string, mode fs.FileMode) error {
	f, err := root.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Chmod(mode)
}
