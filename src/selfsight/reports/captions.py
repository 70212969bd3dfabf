"""How to read each report figure: one caption per card key, shown under its figure."""

CAPTIONS = {
    "training": "Left: against wall-clock time; right: against images seen. The loss should "
                "fall and flatten; the online kNN accuracy (k=200 on a held-out monitor set) "
                "should rise. A falling loss with a flat kNN curve means the method is learning "
                "something the labels do not care about.",
    "training_loss_only": "Left: against wall-clock time; right: against images seen. The "
                          "loss should fall and flatten. No online kNN was logged (pretrain "
                          "with --knn-every N to add accuracy curves).",
    "embedding": "Each dot is a test image, placed by t-SNE so that images with similar "
                 "features sit close together; colours are the true classes, which the backbone "
                 "never saw. Tight single-colour islands are classes the features separate; "
                 "mixed regions are classes it confuses. Distances between islands mean little.",
    "retrieval": "Left: a query test image; to its right, the test images whose features are "
                 "most similar (cosine similarity under each). Green frame: same class as the "
                 "query; red: a different class. Rows with many red frames show where the "
                 "features group by something other than the class.",
    "label_efficiency": "Test accuracy as the fraction of labelled training images grows (log "
                        "scale): mean over seeds, shaded ± one standard deviation. Points above "
                        "the dashed line beat the network trained from scratch with the largest "
                        "fraction run (normally all the labels). "
                        "Dashed curves, where present: each fine-tuned model distilled into a "
                        "student on the unlabelled training images (SimCLRv2's third step).",
    "confusion": "Row = true class, column = predicted class (kNN, k=20); each row sums to 100%. "
                 "A strong diagonal is good; bright off-diagonal cells show which classes are "
                 "mistaken for which.",
    "per_class": "Test accuracy of each class (kNN, k=20); n is the number of test images of the "
                 "class. The dashed line is the mean over classes: bars far below it are the "
                 "classes the features serve worst.",
    "knn_sweep": "kNN top-1 for each number of neighbours k (rows) and temperature T (columns); "
                 "the orange box marks the best cell. A flat map means the score does not hinge "
                 "on these settings. The headline numbers use T=0.1, fixed in advance, not the "
                 "best cell.",
    "robustness": "Test accuracy as each corruption is applied to the test images at increasing "
                  "severity; severity 0 and the dashed line are the clean accuracy. A line that "
                  "stays flat means the features ignore that corruption.",
    "instances": "Each coloured region is one instance that `selfsight segment` separated, with "
                 "no labels: MaskCut cuts of the backbone's patch features, or the segmenter "
                 "trained on them. Below: how many instances each image got.",
    "explore_clusters": "Each row is a cluster that k-means found in the features, largest "
                        "first; the images are the ones nearest its centre, the cluster's most "
                        "typical members. No labels are used: name the clusters by looking. "
                        "Every image's cluster is in the CSV listed below.",
    "explore_map": "Each dot is an image, placed by t-SNE so that images with similar features "
                   "sit close together, coloured by its cluster (the gallery's frame colours). "
                   "Separate islands are groups the features tell apart; a cluster split "
                   "across islands, or islands shared by clusters, are where k is too small or "
                   "too large.",
    "explore_silhouette": "The mean silhouette (how much closer each image is to its own "
                          "cluster than to the next; 1 is perfect, 0 is no structure) of k-means "
                          "with each number of clusters. The highest was chosen; a flat curve "
                          "means several k describe the images about as well.",
    "explore_retrieval": "Left: an image; to its right, the images whose features are most "
                         "similar (cosine similarity under each). Green frame: the same cluster "
                         "as the image on the left; red: another cluster.",
    "explore_to_label": "The images to label first, in order, as TypiClust picks them (Hacohen "
                        "et al., 2022): the features are split into as many k-means clusters as "
                        "labels to spend, and each pick is the most typical image of one "
                        "cluster, largest first. With few labels this covers every kind of "
                        "image once with a clear example, where a random draw repeats the "
                        "common kinds and spends labels on oddities.",
    "explore_duplicates": "Each column: an image (top) and the image whose features it nearly "
                          "repeats (bottom), cosine similarity above: copies, bursts of the same "
                          "scene, or a re-saved file. Worth removing before training or before "
                          "splitting into train and test.",
    "near_duplicates": "Each column: a test image (top) and the training image whose features "
                       "it nearly repeats (bottom), cosine similarity above. Test images with a "
                       "near-duplicate in the training set make kNN scores partly memory rather "
                       "than generalisation.",
}
