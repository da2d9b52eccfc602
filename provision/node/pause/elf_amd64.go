package pause

import "encoding/binary"

// The amd64 pause executable, a static ELF64 with one PT_LOAD segment that
// maps the whole file read+execute at loadAddr. Its code, in Intel syntax
// (checked against GNU as; offsets are from codeOff):
//
//	00 b8 0d 00 00 00        mov eax, 13            ; rt_sigaction
//	05 bf 0f 00 00 00        mov edi, 15            ;   SIGTERM
//	0a 48 8d 35 57 00 00 00  lea rsi, [rip+0x57]    ;   &actExit (0x68)
//	11 31 d2                 xor edx, edx           ;   no old action
//	13 41 ba 08 00 00 00     mov r10d, 8            ;   sizeof(sigset_t)
//	19 0f 05                 syscall
//	1b b8 0d 00 00 00        mov eax, 13            ; rt_sigaction
//	20 bf 02 00 00 00        mov edi, 2             ;   SIGINT
//	25 48 8d 35 3c 00 00 00  lea rsi, [rip+0x3c]    ;   &actExit (0x68)
//	2c 31 d2                 xor edx, edx
//	2e 41 ba 08 00 00 00     mov r10d, 8
//	34 0f 05                 syscall
//	36 b8 0d 00 00 00        mov eax, 13            ; rt_sigaction
//	3b bf 11 00 00 00        mov edi, 17            ;   SIGCHLD
//	40 48 8d 35 41 00 00 00  lea rsi, [rip+0x41]    ;   &actIgnore (0x88)
//	47 31 d2                 xor edx, edx
//	49 41 ba 08 00 00 00     mov r10d, 8
//	4f 0f 05                 syscall
//	51 b8 22 00 00 00  loop: mov eax, 34            ; pause
//	56 0f 05                 syscall
//	58 eb f7                 jmp loop               ; a signal returned: pause again
//	5a b8 e7 00 00 00  exit: mov eax, 231           ; exit_group (the signal handler)
//	5f 31 ff                 xor edi, edi           ;   status 0
//	61 0f 05                 syscall
//	63 00 x 5                                       ; padding to 8-byte alignment
//	68 actExit:   struct kernel_sigaction{handler=exit, flags=SA_RESTORER, restorer=exit, mask=0}
//	88 actIgnore: struct kernel_sigaction{handler=SIG_IGN(1), flags=0, restorer=0, mask=0}
//
// On x86-64 the kernel refuses to deliver a signal to a handler without
// SA_RESTORER; the handler never returns, so the restorer is never called
// and pointing it at the handler is enough. The errors of rt_sigaction are
// ignored: it cannot fail with these arguments.
const (
	loadAddr   = 0x400000 // where the file is mapped (non-PIE ET_EXEC)
	ehdrSize   = 64       // ELF64 header
	phdrSize   = 56       // one ELF64 program header
	codeOff    = ehdrSize + phdrSize
	exitOff    = 0x5a // the handler, relative to codeOff
	actExitOff = 0x68
	actIgnOff  = 0x88
	actSize    = 32 // handler, flags, restorer, mask: 4 x 8 bytes
	imageSize  = codeOff + actIgnOff + actSize

	saRestorer = 0x04000000
	sigIgn     = 1
)

var amd64Code = []byte{
	0xb8, 0x0d, 0x00, 0x00, 0x00,
	0xbf, 0x0f, 0x00, 0x00, 0x00,
	0x48, 0x8d, 0x35, 0x57, 0x00, 0x00, 0x00,
	0x31, 0xd2,
	0x41, 0xba, 0x08, 0x00, 0x00, 0x00,
	0x0f, 0x05,
	0xb8, 0x0d, 0x00, 0x00, 0x00,
	0xbf, 0x02, 0x00, 0x00, 0x00,
	0x48, 0x8d, 0x35, 0x3c, 0x00, 0x00, 0x00,
	0x31, 0xd2,
	0x41, 0xba, 0x08, 0x00, 0x00, 0x00,
	0x0f, 0x05,
	0xb8, 0x0d, 0x00, 0x00, 0x00,
	0xbf, 0x11, 0x00, 0x00, 0x00,
	0x48, 0x8d, 0x35, 0x41, 0x00, 0x00, 0x00,
	0x31, 0xd2,
	0x41, 0xba, 0x08, 0x00, 0x00, 0x00,
	0x0f, 0x05,
	0xb8, 0x22, 0x00, 0x00, 0x00,
	0x0f, 0x05,
	0xeb, 0xf7,
	0xb8, 0xe7, 0x00, 0x00, 0x00,
	0x31, 0xff,
	0x0f, 0x05,
}

// amd64ELF assembles the executable: header, program header, code, data.
func amd64ELF() []byte {
	b := make([]byte, imageSize)
	le := binary.LittleEndian

	// ELF header (Elf64_Ehdr).
	copy(b[0:], []byte{0x7f, 'E', 'L', 'F'}) // e_ident[EI_MAG0..3]
	b[4] = 2                                 // EI_CLASS: ELFCLASS64
	b[5] = 1                                 // EI_DATA: little endian
	b[6] = 1                                 // EI_VERSION: EV_CURRENT
	b[7] = 0                                 // EI_OSABI: System V; bytes 8-15 (ABI version, padding) stay 0
	le.PutUint16(b[16:], 2)                  // e_type: ET_EXEC
	le.PutUint16(b[18:], 62)                 // e_machine: EM_X86_64
	le.PutUint32(b[20:], 1)                  // e_version: EV_CURRENT
	le.PutUint64(b[24:], loadAddr+codeOff)   // e_entry: the first instruction
	le.PutUint64(b[32:], ehdrSize)           // e_phoff: program headers follow the ELF header
	le.PutUint64(b[40:], 0)                  // e_shoff: no section headers
	le.PutUint32(b[48:], 0)                  // e_flags
	le.PutUint16(b[52:], ehdrSize)           // e_ehsize
	le.PutUint16(b[54:], phdrSize)           // e_phentsize
	le.PutUint16(b[56:], 1)                  // e_phnum
	le.PutUint16(b[58:], 0)                  // e_shentsize
	le.PutUint16(b[60:], 0)                  // e_shnum
	le.PutUint16(b[62:], 0)                  // e_shstrndx: SHN_UNDEF

	// Program header (Elf64_Phdr): load the whole file at loadAddr.
	p := b[ehdrSize:]
	le.PutUint32(p[0:], 1)          // p_type: PT_LOAD
	le.PutUint32(p[4:], 5)          // p_flags: PF_R|PF_X
	le.PutUint64(p[8:], 0)          // p_offset
	le.PutUint64(p[16:], loadAddr)  // p_vaddr
	le.PutUint64(p[24:], loadAddr)  // p_paddr
	le.PutUint64(p[32:], imageSize) // p_filesz
	le.PutUint64(p[40:], imageSize) // p_memsz
	le.PutUint64(p[48:], 0x1000)    // p_align: page

	// Code, then the two sigaction structs (8-byte aligned; codeOff is 120).
	c := b[codeOff:]
	copy(c, amd64Code)
	handler := uint64(loadAddr + codeOff + exitOff)
	le.PutUint64(c[actExitOff:], handler)      // sa_handler
	le.PutUint64(c[actExitOff+8:], saRestorer) // sa_flags
	le.PutUint64(c[actExitOff+16:], handler)   // sa_restorer (never called)
	le.PutUint64(c[actExitOff+24:], 0)         // sa_mask: block nothing extra
	le.PutUint64(c[actIgnOff:], sigIgn)        // sa_handler: SIG_IGN; the rest stays 0
	return b
}
