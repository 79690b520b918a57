package layersec;

import java.util.Map;
import java.util.Optional;

/**
 * What {@link LayerSec#inspect} says about a CMS/S-MIME object: the library's JSON description
 * of its layers, algorithms, recipients and signers ({@link #json()}, the same as
 * {@code layersec inspect --json}), also parsed ({@link #tree()}). An immutable value.
 */
public final class Inspection {
    private final String json;
    private final Map<String, Object> tree;

    Inspection(String json) {
        this.json = json;
        this.tree = Json.object(Json.parse(json), "the inspection");
    }

    /** The JSON text as the library wrote it. */
    public String json() {
        return json;
    }

    /**
     * The JSON parsed: objects as {@code Map<String, Object>} (in document order), arrays as
     * {@code List<Object>}, numbers as {@code Long} or {@code Double}, strings, booleans, null.
     */
    public Map<String, Object> tree() {
        return tree;
    }

    /**
     * The problem that ended the description, as {@code "LS_ERR_NAME: message"}, or empty when
     * the whole object was described (the {@code "error"} member is null).
     */
    public Optional<String> error() {
        Object e = tree.get("error");
        if (!(e instanceof Map)) {
            return Optional.empty();
        }
        Map<String, Object> m = Json.object(e, "error");
        return Optional.of(m.get("name") + ": " + m.get("message"));
    }

    @Override
    public String toString() {
        return "Inspection" + json;
    }
}
