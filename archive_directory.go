package runnerapi

import (
	"archive/zip"
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// What one entry of an archive may take in its central directory record. Every entry an archive can hold with a
// legal name fits, so that MaxFiles bounds the directory's size, and with it what reading the directory takes.
const (
	// maxEntryName bounds an entry's name: 4096 bytes, PATH_MAX on Linux, the longest path a runner's archiver can
	// open in one call, and so the longest name it can have put into an artifacts archive.
	maxEntryName = 4096
	// maxEntryExtra bounds an entry's extra field and comment together. The extra fields archivers write (zip64
	// sizes, timestamps, Unix owners, NTFS times) take well under a hundred bytes; runners write no comments.
	maxEntryExtra = 1024
	// maxDirectoryRecord is the most a legal entry's central directory record takes: its fixed part, name, extra
	// field and comment.
	maxDirectoryRecord = directoryRecordLen + maxEntryName + maxEntryExtra
)

// The records at the end of a zip archive (APPNOTE.TXT 4.3.12 to 4.3.16).
const (
	directoryRecordLen       = 46 // central directory file header, without its name, extra field and comment
	directoryRecordSignature = 0x02014b50
	digitalSignatureSig      = 0x05054b50 // may close the central directory
	endRecordLen             = 22         // end of central directory record, without its comment
	endRecordSignature       = 0x06054b50
	maxEndComment            = 65535
	zip64LocatorLen          = 20
	zip64LocatorSignature    = 0x07064b50
	zip64EndRecordLen        = 56 // zip64 end of central directory record, without its extensible data
	zip64EndRecordSignature  = 0x06064b50
)

// directoryEnd is what an archive's end records say of its central directory.
type directoryEnd struct {
	records uint64 // entries
	size    uint64 // bytes of the central directory
	offset  uint64 // where it starts, from the start of the archive
	at      int64  // where the end records start in the file: the directory should end there
	zip64   bool
}

// openArchive reads the zip archive of size bytes in r, refusing with ErrTooLarge, before anything of its central
// directory is held in memory, an archive whose end records count more than maxFiles entries or a central
// directory larger than maxFiles legal entries take (maxDirectoryRecord each), or whose directory holds more
// entries or larger records than that; a negative maxFiles bounds neither. The directory must lie right before the
// end records, and its records must fill it exactly. archive/zip then reads the archive through a view that ends
// with the directory and end records of its own, so that it reads those records and no others, whatever the
// original end records or the bytes after the directory say.
func openArchive(r io.ReaderAt, size int64, maxFiles int) (*zip.Reader, error) {
	end, err := findDirectoryEnd(r, size)
	if err != nil {
		return nil, err
	}
	if maxFiles >= 0 && end.records > uint64(maxFiles) {
		return nil, fmt.Errorf("the archive holds %d entries, over the limit of %d: %w", end.records, maxFiles, ErrTooLarge)
	}
	if maxFiles >= 0 && uint64(maxFiles) <= math.MaxUint64/maxDirectoryRecord && end.size > uint64(maxFiles)*maxDirectoryRecord {
		return nil, fmt.Errorf("the archive's central directory takes %d bytes, more than %d entries can need: %w", end.size, maxFiles, ErrTooLarge)
	}
	if end.size > uint64(end.at) || end.offset > uint64(end.at)-end.size {
		return nil, fmt.Errorf("%w: a central directory of %d bytes at offset %d does not end where the end records start, at %d", errNotZip, end.size, end.offset, end.at)
	}
	dirStart := end.at - int64(end.size)
	// Data before the archive (a self-extracting stub) shifts it: offsets count from where the archive starts.
	base := dirStart - int64(end.offset)
	count, err := walkDirectory(r, dirStart, int64(end.size), maxFiles)
	if err != nil {
		return nil, err
	}
	// Archivers without zip64 write the count of more than 65535 entries truncated to 16 bits.
	if end.zip64 && count != end.records || !end.zip64 && uint16(count) != uint16(end.records) {
		return nil, fmt.Errorf("%w: the end records count %d entries, the central directory holds %d", errNotZip, end.records, count)
	}
	v := &archiveView{r: r, base: base, body: end.at - base}
	v.tail = directoryTail(uint64(count), end.size, end.offset, uint64(v.body))
	return zip.NewReader(v, v.body+int64(len(v.tail)))
}

// errNotZip marks an archive that is not a well-formed zip.
var errNotZip = errors.New("not a valid zip archive")

// findDirectoryEnd reads the end of central directory record, the last one in the file whose comment fits, and the
// zip64 end record when the former's fields say there is one.
func findDirectoryEnd(r io.ReaderAt, size int64) (directoryEnd, error) {
	n := min(size, endRecordLen+maxEndComment)
	if n < endRecordLen {
		return directoryEnd{}, fmt.Errorf("%w: %d bytes", errNotZip, size)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, size-n); err != nil && err != io.EOF {
		return directoryEnd{}, err
	}
	at := -1
	for i := len(buf) - endRecordLen; i >= 0; i-- {
		if binary.LittleEndian.Uint32(buf[i:]) == endRecordSignature &&
			i+endRecordLen+int(binary.LittleEndian.Uint16(buf[i+20:])) <= len(buf) {
			at = i
			break
		}
	}
	if at < 0 {
		return directoryEnd{}, fmt.Errorf("%w: no end of central directory record", errNotZip)
	}
	b := buf[at:]
	end := directoryEnd{
		records: uint64(binary.LittleEndian.Uint16(b[10:])),
		size:    uint64(binary.LittleEndian.Uint32(b[12:])),
		offset:  uint64(binary.LittleEndian.Uint32(b[16:])),
		at:      size - n + int64(at),
	}
	if end.records != 0xffff && end.size != 0xffffffff && end.offset != 0xffffffff {
		return end, nil
	}
	// The values may not fit the record's fields: a zip64 locator right before it then points to the real ones.
	locAt := end.at - zip64LocatorLen
	if locAt < 0 {
		return end, nil
	}
	var loc [zip64LocatorLen]byte
	if _, err := r.ReadAt(loc[:], locAt); err != nil {
		return directoryEnd{}, err
	}
	if binary.LittleEndian.Uint32(loc[0:]) != zip64LocatorSignature {
		return end, nil
	}
	recAt := binary.LittleEndian.Uint64(loc[8:])
	if recAt > uint64(locAt) || uint64(locAt)-recAt < zip64EndRecordLen {
		return directoryEnd{}, fmt.Errorf("%w: the zip64 end record at %d does not lie before its locator at %d", errNotZip, recAt, locAt)
	}
	var rec [zip64EndRecordLen]byte
	if _, err := r.ReadAt(rec[:], int64(recAt)); err != nil {
		return directoryEnd{}, err
	}
	if binary.LittleEndian.Uint32(rec[0:]) != zip64EndRecordSignature {
		return directoryEnd{}, fmt.Errorf("%w: no zip64 end record where its locator points", errNotZip)
	}
	return directoryEnd{
		records: binary.LittleEndian.Uint64(rec[32:]),
		size:    binary.LittleEndian.Uint64(rec[40:]),
		offset:  binary.LittleEndian.Uint64(rec[48:]),
		at:      int64(recAt),
		zip64:   true,
	}, nil
}

// walkDirectory counts the records of the central directory of size bytes at start, reading them through a small
// buffer and keeping none. They must fill it exactly (a digital signature may close it). With maxFiles not
// negative, more than maxFiles records, or one with a name or extra field longer than a legal entry's, are refused
// with ErrTooLarge.
func walkDirectory(r io.ReaderAt, start, size int64, maxFiles int) (uint64, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, start, size), 64<<10)
	var (
		hdr   [directoryRecordLen]byte
		count uint64
	)
	for left := size; left > 0; {
		if _, err := io.ReadFull(br, hdr[:4]); err != nil {
			return 0, fmt.Errorf("%w: the central directory ends inside a record", errNotZip)
		}
		if sig := binary.LittleEndian.Uint32(hdr[:]); sig == digitalSignatureSig && left >= 6 {
			if _, err := io.ReadFull(br, hdr[4:6]); err != nil {
				return 0, fmt.Errorf("%w: the central directory ends inside its signature", errNotZip)
			}
			if int64(binary.LittleEndian.Uint16(hdr[4:])) != left-6 {
				return 0, fmt.Errorf("%w: the central directory's signature does not close it", errNotZip)
			}
			return count, nil
		} else if sig != directoryRecordSignature {
			return 0, fmt.Errorf("%w: entry %d of the central directory is not a directory record", errNotZip, count)
		}
		if maxFiles >= 0 && count == uint64(maxFiles) {
			return 0, fmt.Errorf("the archive holds more than %d entries: %w", maxFiles, ErrTooLarge)
		}
		if _, err := io.ReadFull(br, hdr[4:]); err != nil {
			return 0, fmt.Errorf("%w: the central directory ends inside a record", errNotZip)
		}
		name := int64(binary.LittleEndian.Uint16(hdr[28:]))
		extra := int64(binary.LittleEndian.Uint16(hdr[30:])) + int64(binary.LittleEndian.Uint16(hdr[32:]))
		switch {
		case maxFiles >= 0 && name > maxEntryName:
			return 0, fmt.Errorf("entry %d has a name of %d bytes, over the limit of %d: %w", count, name, maxEntryName, ErrTooLarge)
		case maxFiles >= 0 && extra > maxEntryExtra:
			return 0, fmt.Errorf("entry %d has %d bytes of extra fields and comment, over the limit of %d: %w", count, extra, maxEntryExtra, ErrTooLarge)
		case directoryRecordLen+name+extra > left:
			return 0, fmt.Errorf("%w: entry %d runs past the end of the central directory", errNotZip, count)
		}
		if _, err := br.Discard(int(name + extra)); err != nil {
			return 0, fmt.Errorf("%w: the central directory ends inside a record", errNotZip)
		}
		left -= directoryRecordLen + name + extra
		count++
	}
	return count, nil
}

// directoryTail returns end records for a central directory of size bytes at offset holding records entries,
// itself ending at end: always in zip64 form, so that one form serves every archive.
func directoryTail(records, size, offset, end uint64) []byte {
	b := make([]byte, 0, zip64EndRecordLen+zip64LocatorLen+endRecordLen)
	le := binary.LittleEndian
	b = le.AppendUint32(b, zip64EndRecordSignature)
	b = le.AppendUint64(b, zip64EndRecordLen-12) // the record's size after this field
	b = le.AppendUint16(b, 45)                   // made by: version 4.5, zip64
	b = le.AppendUint16(b, 45)                   // needed to extract
	b = le.AppendUint32(b, 0)                    // this disk
	b = le.AppendUint32(b, 0)                    // the disk where the directory starts
	b = le.AppendUint64(b, records)              // on this disk
	b = le.AppendUint64(b, records)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, offset)
	b = le.AppendUint32(b, zip64LocatorSignature)
	b = le.AppendUint32(b, 0)   // the disk of the zip64 end record
	b = le.AppendUint64(b, end) // where it starts
	b = le.AppendUint32(b, 1)   // disks
	b = le.AppendUint32(b, endRecordSignature)
	b = le.AppendUint16(b, 0)      // this disk
	b = le.AppendUint16(b, 0)      // the disk where the directory starts
	b = le.AppendUint16(b, 0xffff) // entries on this disk: in the zip64 record
	b = le.AppendUint16(b, 0xffff)
	b = le.AppendUint32(b, 0xffffffff) // size: in the zip64 record
	b = le.AppendUint32(b, 0xffffffff) // offset: in the zip64 record
	return le.AppendUint16(b, 0)       // no comment
}

// archiveView is an archive as archive/zip is to read it: the bytes of r from base up to the end of the central
// directory, then end records of the SDK's own.
type archiveView struct {
	r    io.ReaderAt
	base int64 // where the archive starts in r
	body int64 // how many bytes of r, from base, the view shows
	tail []byte
}

// ReadAt reads the view as io.ReaderAt says.
func (v *archiveView) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	n := 0
	if off < v.body {
		k := int(min(int64(len(p)), v.body-off))
		m, err := v.r.ReadAt(p[:k], v.base+off)
		n += m
		if m < k {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF // r is shorter than the archive was
			}
			return n, err
		}
		p, off = p[k:], off+int64(k)
	}
	if len(p) == 0 {
		return n, nil
	}
	if t := off - v.body; t < int64(len(v.tail)) {
		m := copy(p, v.tail[t:])
		n += m
		p = p[m:]
	}
	if len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}
