# lib.sh - shared by scripts/run and scripts/test: install what is missing,
# build. Sourced, not run.

BUILD_PKGS="gcc g++ pkg-config meson ninja-build fuse3 libfuse3-dev
 libjpeg62-turbo-dev libpng-dev libcurl4-openssl-dev libsqlite3-dev
 libssl-dev libinih-dev libpq-dev libexif-dev
 libwebp-dev libtiff-dev libgif-dev libheif-dev libmicrohttpd-dev
 libpoppler-glib-dev libcairo2-dev libavformat-dev libavcodec-dev
 libswscale-dev libavutil-dev libgdcm-dev libseccomp-dev libunistring-dev"

# Install the Debian packages named that are not installed yet.
install_pkgs() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "thumbfs: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# build DIR [meson options...]: configure once, then build.
build() {
	local dir=$1
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" -Dwerror=true "$@" >/dev/null
	fi
	ninja -C "$dir" >/dev/null
}
