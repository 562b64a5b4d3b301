/* Fixed private keys for the harnesses that must sign what they parsed (the
 * CSR harness re-signs a mutated request so the proof of possession holds).
 * Test keys, public on purpose: fuzz/mkcorpus.py reads them from this file
 * to write seeds whose public keys are these. Never used outside fuzz/. */
#ifndef TSR_FUZZ_KEYS_H
#define TSR_FUZZ_KEYS_H

static const char FUZZ_KEY_P256[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgCQUwZ+OGuwpwahDj\n"
    "za/03yvf/GhzBEm2hVoilk7hX0KhRANCAAQ6e4hvH3+LWj9GXfaF8wInfRPxMrUS\n"
    "cNc/WjZZN5aR5A2xjdktTgSteeVf9t5jHxPa47rPJbh6Ysaij4mU878g\n"
    "-----END PRIVATE KEY-----\n";

static const char FUZZ_KEY_P384[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDDmWBPVWH79T69OZLh5\n"
    "4cuZtfhKNjCAy9f44emcK1CSIVFjmUUOdeg8VpExRrp7vUChZANiAATKBC4dRVuZ\n"
    "zJLHsU26AsqlOR0fRQ58nF6yNyZ4QnHVvpz7qTAJGBqPnmR+rPCsXiHKW9SwhKpT\n"
    "G55N/86N/7D3JYg8ZT0UZdvdib6vOV9jTcCfYUSVZ6JCyR+9mcHBpjY=\n"
    "-----END PRIVATE KEY-----\n";

static const char FUZZ_KEY_ED25519[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIPI5cbvmv60CC4pvCma5LLjpSbaiRM1SukCGmEFfor0U\n"
    "-----END PRIVATE KEY-----\n";

static const char FUZZ_KEY_RSA2048[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDPg2EwYwjWg6jD\n"
    "YOCdEOlfuaZ8VtMnddwyo1pBbTORWd0l7nUzodI3g9x9akMbBjv0xvHhICzcW+tM\n"
    "f2yNHUC7EQPGM6alcW3A2oTeWk+29jqmCTm3M1Xt2soN6LVYRDxJJNfMEY+5ssaX\n"
    "2eHI7i8tUWE3DNVOex+/EUNtPfJr5zFSmQwTPGuZksIAlrFMVOtYzLosFzT8I5tJ\n"
    "E5AgYHATM3jrXTMBfOPGYSgZuZbU7TO8x0Q/QQK7Fw3pbeLd8vjalPMMpWi6mFAS\n"
    "N2IEJCZpO99QmLzrZnRqluCVvdzeDiQgfYspiwit/KO4IcBg64EBi3pWP10SLfaR\n"
    "wgNy0W5BAgMBAAECggEAF/pdntZ2tTjZ5ZeaZLPJT6kXUntC42akRsqm2XQJlyRL\n"
    "4D/tVYW/kXAgaHKApg0CnQ5m8SVDYcQSTJDVxXmJmwQEjGC4Axp3/OaTH1FOsDzD\n"
    "+p8Kxv880OLs4Y4P9E7QK4CBGgC2e5XriizgQNQ66dDjO5X1SOADw1N2l9cmXa7Q\n"
    "ISGgKZNUzyqFUncuI6cVFvjrz9BB6zOypr7KHVElWgM+WqVBk7hQTjrm82nxyZsx\n"
    "p7X+DqLdxBQEgnjp/dn0TI8jP6dZq8xTJSb583s4zEDks3GdVU3yvdC74nM0y1SX\n"
    "okY80GD9McIOb+Q+/vzJ6iDC1ci8MuQWmpFczdyZRQKBgQD0rE8Z3mYL2KtQcwUv\n"
    "8h+ZFn+RKslILSH55mLwQ71RcwU9Y8JXiV+39ln7GRvhyQhZKGlHNAbjEAl7ywo7\n"
    "bfSCM1O2sfIbTJ0eaaGg1qtKwt9xZt8g0xhMIydIRb0iNrjnRnaZNZpWjYvHrf9J\n"
    "RcKx0Yo9yAjB/5LGpbxND3TK9QKBgQDZHq2g3R75nnZMFq7exVawAg3IRXqonbJ9\n"
    "CcRLpiJQtiahfZhDf2tr31W5mvmiXgQzE7C1r0mPJuGR7uDaiKpTPeCEOSUqQAOy\n"
    "rX25Ub1N9rXHU0wSIRojQAIM2bkapJTnKNCkZjnhzzKtIuY8esbg2onuFUn36BPl\n"
    "6H2kOh9enQKBgElj7g4qYZ2oDisBdUrea4/16anXlayqrQhSjNbY2s61m5rAc6ji\n"
    "Me3yXScubuiY7oIf1wRenLo7Mz0IuDb/UlpDnxar5Z0+q9pVgP/HpHW2YmOXodIs\n"
    "v5sG6F+LW6IJnAjzX9uw8myH5Keuj2ahIDdKTRcfC1F1occoK4VJ35SJAoGBAKWu\n"
    "DVyFn89npmnlnUeNWtswlgfPTQxCWiOkQlBf1Cu287+jsX9ASl6krCvYIMpP5/B6\n"
    "BAyAWCeOye6sVJUuWJrwytTbLosREkFUtm2l/Ej0DD6wR4pGDEX94BKiSegU0zOa\n"
    "J6xr/ZtcmxUXXo2kOwL2gO5W/HzaceStBsM9PxbZAoGBAJsGp+iHDye/eS0wQACm\n"
    "/tcya2ZMnCgocYbcGblczyv20OMonYSNHauUvDP0BTIjfnxNxyp5bkXDug9KXHSs\n"
    "MuPd7vGOVxkGqHHRYHl0bk+f3SuckR+1AtHXnI0wz5LzyjJCsTZXRhkGQmxp+mOn\n"
    "AB6QjnWiPTVKOhsk2Zo3Yv+j\n"
    "-----END PRIVATE KEY-----\n";

#endif
