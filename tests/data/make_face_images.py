#!/usr/bin/python3
"""Write the images for the MediaPipe face detector's functional check (tests/data/mediapipe/).

The detector (face_detection_short_range.tflite from npm's @mediapipe/face_detection) has no
reference outputs we could compare with: TensorFlow is not in Debian. So its test is
functional: on a photo with one face it must find that face where an independent detector
finds it, and on a photo without a face it must find none. The photos are scikit-image's
bundled data (Debian's python3-skimage): `astronaut` (NASA's portrait of Eileen Collins, public
domain) and `coffee` (a cup of coffee, no face). The independent detector is OpenCV's Viola-Jones
Haar cascade (Debian's opencv-data, haarcascade_frontalface_default.xml) run on the full 512x512
image.

Writes, 128x128 RGB (the detector's input size; INTER_AREA resize):
    astronaut_128.png, coffee_128.png
    faces.json   {"<png>": [[x, y, w, h], ...]}, the cascade's boxes as fractions of the image

    scripts/install-deps.sh --models && /usr/bin/python3 tests/data/make_face_images.py
"""

import json
import os
import sys

import cv2
import skimage.data

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "mediapipe")
CASCADE = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"
SIZE = 128


def faces(rgb):
    cascade = cv2.CascadeClassifier(CASCADE)
    if cascade.empty():
        sys.exit(f"cannot read {CASCADE} (Debian package opencv-data)")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(w // 8, h // 8))
    return [[round(float(x) / w, 4), round(float(y) / h, 4), round(float(bw) / w, 4),
             round(float(bh) / h, 4)] for x, y, bw, bh in boxes]


def main():
    os.makedirs(OUT, exist_ok=True)
    found = {}
    for name, expect in (("astronaut", 1), ("coffee", 0)):
        rgb = getattr(skimage.data, name)()
        boxes = faces(rgb)
        if len(boxes) != expect:
            sys.exit(f"{name}: the cascade found {len(boxes)} face(s), expected {expect}")
        small = cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        png = f"{name}_{SIZE}.png"
        cv2.imwrite(os.path.join(OUT, png), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        found[png] = boxes
        print(f"{png}: faces {boxes}")
    with open(os.path.join(OUT, "faces.json"), "w") as f:
        json.dump(found, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
