# For C hosts: build the shipped plugin and install it where a C build finds it.
#   make ship                          the shipped .so (Cargo profile `ship`: LTO, stripped)
#   make install PREFIX=/usr/local     .so, header and pkg-config file (builds `ship` first)
#   make install PREFIX=... LIB=path   install an already-built .so instead
# Then: cc $(pkg-config --cflags bedrock-plugin) host.c -ldl, and dlopen $(PREFIX)/lib/libbedrock_plugin.so
# (or link it: pkg-config --libs bedrock-plugin).

PREFIX ?= /usr/local
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
LIB ?= target/ship/libbedrock_plugin.so

# Each build gets its SHA-256 beside it (sha256sum's format): `bp-host serve` loads a build only
# if it is the one its digest names, so a half-written file or a mix of two builds is refused.
# Identical functions folded at link time (--icf=all; Rust does not promise distinct functions
# distinct addresses) take ~250 KB off; `cargo rustc` gives the flags to the plugin's link
# alone, and strips explicitly whatever per-package settings the profile later gets.
# The library is built as a cdylib alone (Cargo.toml also names rlib, for the tests): with an rlib
# beside it rustc keeps every public Rust symbol of the crate graph exported during LTO, so
# nothing is internalised and the code reaches itself through the GOT (docs/performance.md:
# 8,719,184 bytes as both, 7.1 MB as a cdylib).
SHIP_BUILD = cargo rustc --profile ship -p bedrock-plugin --lib --crate-type cdylib -- -C link-arg=-Wl,--icf=all -C strip=symbols

ship:
	$(SHIP_BUILD)
	cd target/ship && sha256sum libbedrock_plugin.so > libbedrock_plugin.so.sha256

target/ship/libbedrock_plugin.so:
	$(SHIP_BUILD)

# The digest goes in first, then the library is written beside its final name and renamed over
# it, so a serving gateway never sees a half-written build under that name.
install: $(LIB)
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	sha256sum $(LIB) | sed 's| .*|  libbedrock_plugin.so|' > $(DESTDIR)$(PREFIX)/lib/.libbedrock_plugin.so.sha256.incoming
	mv -f $(DESTDIR)$(PREFIX)/lib/.libbedrock_plugin.so.sha256.incoming $(DESTDIR)$(PREFIX)/lib/libbedrock_plugin.so.sha256
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/.libbedrock_plugin.so.incoming
	mv -f $(DESTDIR)$(PREFIX)/lib/.libbedrock_plugin.so.incoming $(DESTDIR)$(PREFIX)/lib/libbedrock_plugin.so
	install -m 0644 include/bedrock_plugin.h $(DESTDIR)$(PREFIX)/include/bedrock_plugin.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' include/bedrock-plugin.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/bedrock-plugin.pc

.PHONY: ship install
