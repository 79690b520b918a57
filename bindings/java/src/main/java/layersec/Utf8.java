package layersec;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetEncoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;

/** Strings to the C ABI: NUL-terminated UTF-8 bytes (not JNI's "modified UTF-8"). */
final class Utf8 {
    private Utf8() {}

    /** {@code s} as NUL-terminated UTF-8, or null for null; an embedded NUL is refused. */
    static byte[] cstr(String s, String what) {
        if (s == null) {
            return null;
        }
        if (s.indexOf('\0') >= 0) {
            throw new IllegalArgumentException(what + " must not contain a NUL character");
        }
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        return Arrays.copyOf(b, b.length + 1);
    }

    static byte[] path(Path p, String what) {
        return p == null ? null : cstr(p.toString(), what);
    }

    /** Library text (UTF-8, no NUL) to a String; null stays null. */
    static String text(byte[] b) {
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    /**
     * A password as NUL-terminated UTF-8 in a new array that is the only copy (wipe it with
     * {@link #wipe} after the call): encoded straight into it, without a String or a growing
     * buffer that would leave copies behind. The caller's char[] is not changed.
     */
    static byte[] password(char[] password) {
        return password(password, "password");
    }

    /** {@link #password(char[])} for a secret named {@code what} in messages (e.g. "pin"). */
    static byte[] password(char[] password, String what) {
        if (password == null) {
            return null;
        }
        for (char c : password) {
            if (c == '\0') {
                throw new IllegalArgumentException(what + " must not contain a NUL character");
            }
        }
        CharsetEncoder enc = StandardCharsets.UTF_8.newEncoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        // At most 3 bytes per UTF-16 unit (a surrogate pair: 4 bytes for 2 units), plus the NUL.
        byte[] out = new byte[password.length * 3 + 1];
        ByteBuffer bb = ByteBuffer.wrap(out);
        try {
            CoderResult r = enc.encode(CharBuffer.wrap(password), bb, true);
            if (!r.isUnderflow()) {
                r.throwException();
            }
            r = enc.flush(bb);
            if (!r.isUnderflow()) {
                r.throwException();
            }
        } catch (CharacterCodingException e) {
            wipe(out);
            throw new IllegalArgumentException(what + " is not valid UTF-16 (a lone surrogate)");
        }
        int n = bb.position();
        byte[] exact = Arrays.copyOf(out, n + 1);
        wipe(out);
        return exact;
    }

    static void wipe(byte[] b) {
        if (b != null) {
            Arrays.fill(b, (byte) 0);
        }
    }
}
